"""The model panel: choose a model folder and device, read its card, run, watch progress.

A plain view: it never loads or runs the model. The controller connects its signals to the
model worker and feeds it the worker's progress.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QVBoxLayout, QWidget)

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.staging.model_card import (card_summary, list_model_folders,
                                                    read_manifest_json)


def cuda_present() -> bool:
    """Whether an NVIDIA driver is loaded: decided without importing torch on the GUI thread.

    Loading on 'cuda' is still checked by the worker, which says clearly if it fails.
    """
    return Path("/proc/driver/nvidia/version").exists()


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


class ModelPanel(QWidget):
    """Model choice, card, run buttons and progress.

    Signals
    -------
    modelChosen(str, str)
        ``(folder, device)`` when the user picks a model or a device.
    runNightRequested(), runPageRequested(), cancelRequested()
    """

    modelChosen = Signal(str, str)
    runNightRequested = Signal()
    runPageRequested = Signal()
    cancelRequested = Signal()

    def __init__(self, models_root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._root = models_root
        self.model_combo = QComboBox()
        self.model_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.browse_button = QPushButton("Other…")
        self.browse_button.setToolTip("Use a model folder from anywhere on disk")
        self.device_combo = QComboBox()
        self.device_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.device_combo.addItem("CPU", "cpu")
        if cuda_present():
            self.device_combo.addItem("CUDA GPU", "cuda")
        self.card_label = QLabel()
        self.card_label.setWordWrap(True)
        self.card_label.setTextFormat(Qt.TextFormat.RichText)
        self.state_label = QLabel("No model loaded")
        self.state_label.setWordWrap(True)
        self.run_night_button = QPushButton("Stage night")
        self.run_night_button.setToolTip("Stage every epoch of the night (Ctrl+R)")
        self.run_page_button = QPushButton("Stage page")
        self.run_page_button.setToolTip("Stage the epochs on screen (Ctrl+Shift+R)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop staging (Ctrl+.); results so far are kept")
        for b in (self.browse_button, self.run_night_button, self.run_page_button,
                  self.cancel_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keyboard stays with scoring
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label = QLabel(" ")

        grid = QGridLayout()
        grid.addWidget(QLabel("Model"), 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.browse_button)
        grid.addLayout(row, 0, 1)
        grid.addWidget(QLabel("Device"), 1, 0)
        grid.addWidget(self.device_combo, 1, 1)
        buttons = QHBoxLayout()
        for b in (self.run_night_button, self.run_page_button, self.cancel_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addLayout(grid)
        lay.addWidget(self.card_label)
        lay.addWidget(self.state_label)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.progress_label)
        lay.addStretch(1)

        self.refresh_models()
        self.model_combo.activated.connect(lambda _i: self._emit_choice())
        self.device_combo.activated.connect(lambda _i: self._emit_choice())
        self.browse_button.clicked.connect(self._browse)
        self.run_night_button.clicked.connect(self.runNightRequested)
        self.run_page_button.clicked.connect(self.runPageRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.set_running(False)
        self.set_loaded(False)

    # ----------------------------------------------------------------- choice
    def refresh_models(self) -> None:
        """List the valid folders under ``model_weights/`` (plus the current custom one)."""
        current = self.folder()
        self.model_combo.clear()
        for folder in list_model_folders(self._root):
            self.model_combo.addItem(folder.name, str(folder))
        if current and self.model_combo.findData(current) < 0:
            self.model_combo.addItem(Path(current).name, current)
        if current:
            self.model_combo.setCurrentIndex(self.model_combo.findData(current))
        self._show_card()

    def folder(self) -> str | None:
        return self.model_combo.currentData()

    def device(self) -> str:
        return self.device_combo.currentData()

    def add_folder(self, folder: str) -> None:
        """Select ``folder`` (adding it to the list) and announce the choice."""
        if self.model_combo.findData(folder) < 0:
            self.model_combo.addItem(Path(folder).name, folder)
        self.model_combo.setCurrentIndex(self.model_combo.findData(folder))
        self._emit_choice()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.add_folder(folder)

    def _emit_choice(self) -> None:
        self._show_card()
        if self.folder():
            self.modelChosen.emit(self.folder(), self.device())

    def _show_card(self) -> None:
        folder = self.folder()
        if not folder:
            self.card_label.setText("<i>No model folder found in model_weights/.</i>")
            return
        try:
            self.card_label.setText(card_summary(read_manifest_json(folder)))
        except EEGVLMError as err:
            self.card_label.setText(f"<span style='color:#b00020'>{err}</span>")

    # ----------------------------------------------------------------- state
    def set_loaded(self, loaded: bool, text: str = "") -> None:
        self.state_label.setText(text or ("Model ready" if loaded else "No model loaded"))
        self.run_night_button.setEnabled(loaded)
        self.run_page_button.setEnabled(loaded)

    def set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)

    def set_progress(self, done: int, total: int, rate: float) -> None:
        """Show ``done`` of ``total`` epochs, the speed and the time left."""
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        left = (total - done) / rate if rate > 0 else 0.0
        self.progress_label.setText(f"{done} / {total} epochs · {rate:.0f} epochs/s · "
                                    f"{_fmt_seconds(left)} left")

    def set_finished(self, text: str) -> None:
        self.set_running(False)
        self.progress_label.setText(text)
