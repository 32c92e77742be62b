"""Small dialogs: errors, hypnogram mismatch choice, go-to, shortcut help, channels."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox,
                               QDoubleSpinBox, QHBoxLayout, QHeaderView, QInputDialog, QLabel,
                               QMessageBox, QPushButton, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from eegvlm_desktop.core.recording.display import DisplayFilter
from eegvlm_desktop.gui.shortcuts import help_rows


def show_error(parent: QWidget | None, title: str, message: str) -> None:
    """A modal error box with the user-facing message (never a traceback)."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok,
                      parent)
    box.setObjectName("errorDialog")
    box.exec()


def ask_mismatch(parent: QWidget | None, file_name: str, problems: list[str]) -> str | None:
    """Ask what to do with a hypnogram that does not fit: 'crop_or_pad' or None (cancel)."""
    box = QMessageBox(parent)
    box.setObjectName("mismatchDialog")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Hypnogram does not match the recording")
    box.setText(f"<b>{file_name}</b> does not fit this recording:")
    box.setInformativeText("\n".join(f"• {p}" for p in problems)
                           + "\n\nCrop extra epochs and mark missing ones as unscored?")
    fit = box.addButton("Crop / pad to fit", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return "crop_or_pad" if box.clickedButton() is fit else None


def ask_read_only(parent: QWidget | None, file_name: str, message: str) -> bool:
    """Another window scores ``file_name``: open it read-only here (True) or not at all."""
    box = QMessageBox(parent)
    box.setObjectName("lockedDialog")
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Night open in another window")
    box.setText(f"<b>{file_name}</b> is being scored in another window.")
    box.setInformativeText(f"{message}\n\nOpen it here read-only, to look without changing "
                           "labels?")
    view = box.addButton("Open read-only", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is view


def ask_epoch(parent: QWidget | None, current: int, n_epochs: int) -> int | None:
    """Go-to dialog; epochs are shown 1-based as scorers count them."""
    value, ok = QInputDialog.getInt(parent, "Go to epoch", f"Epoch (1–{n_epochs}):",
                                    current + 1, 1, n_epochs)
    return value - 1 if ok else None


class ShortcutHelp(QDialog):
    """The keyboard table, generated from ``shortcuts.SHORTCUTS``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = help_rows()
        table = QTableWidget(len(rows), 3, self)
        table.setHorizontalHeaderLabels(["Menu", "Keys", "What it does"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(text))
        table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        table.resizeColumnsToContents()
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(640, 620)


_HP = [None, 0.1, 0.3, 0.5, 1.0, 10.0]
_LP = [None, 15.0, 30.0, 35.0, 45.0, 70.0, 100.0]
_NOTCH = [None, 50.0, 60.0]


def _combo(values: list, current, fmt: str, below: float) -> QComboBox:
    """A choice of cut-offs; only those below ``below`` (Nyquist) are offered."""
    box = QComboBox()
    for v in values:
        if v is not None and v >= below:
            continue
        box.addItem("off" if v is None else fmt.format(v), v)
    if current not in values:
        box.addItem(fmt.format(current), current)
    box.setCurrentIndex(box.findData(current) if current is not None else 0)
    return box


class ChannelsDialog(QDialog):
    """Show/hide, reorder (Up/Down), filter and scale each channel.

    ``result_order()`` gives the visible channels top to bottom; ``result_filters()`` and
    ``result_scales()`` give per-channel settings keyed by channel index.
    """

    COLS = ["Show", "Channel", "Type", "Rate (Hz)", "High-pass", "Low-pass", "Notch", "Lane"]

    def __init__(self, names, types, rates, units, order, filters, scales, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Channels and filters")
        self._names, self._types, self._rates, self._units = names, types, rates, units
        self._filters, self._scales = dict(filters), dict(scales)
        hidden = [i for i in range(len(names)) if i not in order]
        self._rows_order = list(order) + hidden
        self.table = QTableWidget(0, len(self.COLS), self)
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._visible = {i: i in order for i in range(len(names))}
        self._fill()
        up, down = QPushButton("Move up"), QPushButton("Move down")
        up.clicked.connect(lambda: self._move(-1))
        down.clicked.connect(lambda: self._move(1))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, parent=self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(up)
        row.addWidget(down)
        row.addStretch(1)
        row.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Tick to show; select a row and move it to reorder. "
                                "Lane = amplitude filling one channel's lane."))
        layout.addWidget(self.table)
        layout.addLayout(row)
        self.resize(900, 420)

    def _fill(self) -> None:
        self.table.setRowCount(len(self._rows_order))
        for r, ch in enumerate(self._rows_order):
            show = QTableWidgetItem()
            show.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled
                          | Qt.ItemFlag.ItemIsSelectable)
            show.setCheckState(Qt.CheckState.Checked if self._visible[ch]
                               else Qt.CheckState.Unchecked)
            self.table.setItem(r, 0, show)
            for c, text in ((1, self._names[ch]), (2, self._types[ch]),
                            (3, f"{self._rates[ch]:g}")):
                item = QTableWidgetItem(text)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                self.table.setItem(r, c, item)
            f = self._filters[ch]
            nyquist = self._rates[ch] / 2  # a 1-Hz envelope channel gets no filter choices
            self.table.setCellWidget(r, 4, _combo(_HP, f.highpass, "{:g} Hz", nyquist))
            self.table.setCellWidget(r, 5, _combo(_LP, f.lowpass, "{:g} Hz", nyquist))
            self.table.setCellWidget(r, 6, _combo(_NOTCH, f.notch, "{:g} Hz", nyquist))
            spin = QDoubleSpinBox()
            spin.setRange(1e-3, 1e7)
            spin.setDecimals(1)
            spin.setValue(self._scales[ch])
            spin.setSuffix(f" {self._units[ch]}")
            self.table.setCellWidget(r, 7, spin)
        self.table.resizeColumnsToContents()

    def _harvest(self) -> None:
        """Read the widgets back into the dicts (before a refill and on accept)."""
        for r in range(self.table.rowCount()):
            ch = self._rows_order[r]
            self._visible[ch] = self.table.item(r, 0).checkState() == Qt.CheckState.Checked
            hp, lp, notch = (self.table.cellWidget(r, c).currentData() for c in (4, 5, 6))
            self._filters[ch] = DisplayFilter(highpass=hp, lowpass=lp, notch=notch)
            self._scales[ch] = self.table.cellWidget(r, 7).value()

    def _move(self, step: int) -> None:
        r = self.table.currentRow()
        if r < 0 or not 0 <= r + step < len(self._rows_order):
            return
        self._harvest()
        order = self._rows_order
        order[r], order[r + step] = order[r + step], order[r]
        self._fill()
        self.table.selectRow(r + step)

    def accept(self) -> None:  # noqa: D102
        self._harvest()
        super().accept()

    def result_order(self) -> list[int]:
        return [ch for ch in self._rows_order if self._visible[ch]]

    def result_filters(self) -> dict:
        return dict(self._filters)

    def result_scales(self) -> dict:
        return dict(self._scales)
