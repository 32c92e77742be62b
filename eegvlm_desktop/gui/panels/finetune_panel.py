"""Close the loop: export the expert's corrections, then fine-tune a model on them.

A plain view: it collects what the user wants and shows progress and a log; the loop
controller runs the export and the fine-tuning on a background worker.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QPlainTextEdit, QProgressBar, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)


class FinetunePanel(QWidget):
    """Export a fine-tuning dataset; fine-tune the current model on one or more exports.

    Signals
    -------
    exportRequested(str, bool)
        ``(folder, include_identity)``.
    adaptRequested()
        Adapt the current model to the open recording from its expert labels.
    finetuneRequested(dict)
        ``folders`` (list of export folders), ``name`` (new model), ``epochs``,
        ``freeze_vision``, ``holdout`` (keep the last 20 % of each export for evaluation).
    cancelRequested()
    """

    exportRequested = Signal(str, bool)
    finetuneRequested = Signal(dict)
    adaptRequested = Signal()
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # --- adapt to this recording (seconds; the guarded layer re-fit of ml/adapt.py)
        self.adapt_button = QPushButton("Adapt to this recording")
        self.adapt_button.setToolTip(
            "Re-fit the pooled answer to this night's expert labels (confirmed and corrected "
            "epochs), save it as a new model beside the current one and restage the night "
            "with it. The last 20 % of your labelled epochs are held out to show before → "
            "after. Your labels never change; choose the old model in the Model panel to go "
            "back.")
        box0 = QGroupBox("Learn from this night")
        lay0 = QVBoxLayout(box0)
        lay0.addWidget(self.adapt_button)
        # --- export
        self.export_button = QPushButton("Export fine-tuning dataset…")
        self.export_button.setToolTip("Epoch images (the model's own renderer), the expert's "
                                      "stages with reasoning regenerated from the measured "
                                      "evidence, the model's original answers, a manifest")
        self.identity_check = QCheckBox("Include patient identity (name, birth date)")
        self.identity_check.setToolTip("Off by default: exports are de-identified")
        box1 = QGroupBox("Export your corrections")
        lay1 = QVBoxLayout(box1)
        lay1.addWidget(self.export_button)
        lay1.addWidget(self.identity_check)
        # --- fine-tune
        self.folders = QListWidget()
        self.folders.setMaximumHeight(90)
        self.add_button = QPushButton("Add export…")
        self.remove_button = QPushButton("Remove")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name of the new model, e.g. default-ft-lab1")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 200)
        self.epochs_spin.setValue(5)
        self.freeze_check = QCheckBox("Freeze the vision side (tune the language model only)")
        self.holdout_check = QCheckBox("Hold out the last 20 % of each export to measure "
                                       "accuracy before/after")
        self.holdout_check.setChecked(True)
        self.start_button = QPushButton("Fine-tune")
        self.cancel_button = QPushButton("Cancel")
        box2 = QGroupBox("Fine-tune the current model")
        form = QFormLayout()
        form.addRow("New model", self.name_edit)
        form.addRow("Epochs", self.epochs_spin)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        lay2 = QVBoxLayout(box2)
        lay2.addWidget(QLabel("Exports to learn from:"))
        lay2.addWidget(self.folders)
        lay2.addLayout(row)
        lay2.addLayout(form)
        lay2.addWidget(self.freeze_check)
        lay2.addWidget(self.holdout_check)
        lay2.addLayout(buttons)
        # --- progress + log (shared by both jobs)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        lay = QVBoxLayout(self)
        lay.addWidget(box0)
        lay.addWidget(box1)
        lay.addWidget(box2)
        lay.addWidget(self.progress)
        lay.addWidget(self.log, 1)
        for w in (self.adapt_button, self.export_button, self.add_button, self.remove_button, self.start_button,
                  self.cancel_button, self.identity_check, self.freeze_check,
                  self.holdout_check):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # scoring keys stay with the window

        self.adapt_button.clicked.connect(self.adaptRequested)
        self.export_button.clicked.connect(self.choose_export)
        self.add_button.clicked.connect(self._choose_add)
        self.remove_button.clicked.connect(self._remove_selected)
        self.start_button.clicked.connect(self._start)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.set_busy(False)

    # ----------------------------------------------------------------- user actions
    def choose_export(self) -> None:
        folder = QFileDialog.getSaveFileName(self, "Export fine-tuning dataset to a new folder")[0]
        if folder:
            self.exportRequested.emit(folder, self.identity_check.isChecked())

    def _choose_add(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an exported dataset folder")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        """Add an export folder to the fine-tuning list (once)."""
        if not self.folders.findItems(folder, Qt.MatchFlag.MatchExactly):
            self.folders.addItem(folder)

    def _remove_selected(self) -> None:
        for item in self.folders.selectedItems():
            self.folders.takeItem(self.folders.row(item))

    def folder_list(self) -> list[str]:
        return [self.folders.item(i).text() for i in range(self.folders.count())]

    def _start(self) -> None:
        folders = self.folder_list()
        name = self.name_edit.text().strip()
        if not folders:
            self.append_log("Add at least one exported dataset first.")
            return
        if not name or Path(name).name != name:
            self.append_log("Give the new model a plain folder name (no '/').")
            return
        self.finetuneRequested.emit({"folders": folders, "name": name,
                                     "epochs": self.epochs_spin.value(),
                                     "freeze_vision": self.freeze_check.isChecked(),
                                     "holdout": self.holdout_check.isChecked()})

    # ----------------------------------------------------------------- feedback
    def set_busy(self, busy: bool) -> None:
        """While a job runs: Cancel on, starting another off."""
        self.cancel_button.setEnabled(busy)
        self.export_button.setEnabled(not busy)
        self.start_button.setEnabled(not busy)
        self.adapt_button.setEnabled(not busy)

    def set_progress(self, done: int, total: int, text: str = "") -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(text or "%p %")

    def append_log(self, line: str) -> None:
        self.log.appendPlainText(line)
