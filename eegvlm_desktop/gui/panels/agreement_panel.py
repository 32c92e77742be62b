"""Model vs expert: overall agreement, per-stage F1 and the confusion matrix.

Shows exactly the dict of :func:`eegvlm_desktop.core.staging.metrics.stage_metrics` (as returned by
:meth:`ModelLayer.agreement`), so the numbers match every other comparison in the project.
A plain view: the main window recomputes the metrics (off the GUI thread if it likes) and
passes them in.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QFormLayout, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from eegvlm_desktop.core.stages import STAGES

#: Shading of the confusion matrix: agreement (diagonal) blue, confusions red.
_DIAGONAL, _OFF_DIAGONAL = QColor("#3a7ecf"), QColor("#d1495b")
CAVEAT = "Agreement on epochs both have scored."
NO_DATA = "No epochs scored by both the model and the expert yet."


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f} %" if percent else f"{value:.2f}"


def _shade(base: QColor, fraction: float) -> QColor:
    """``base`` blended into white by ``fraction`` (0 = white, 1 = base)."""
    f = max(0.0, min(1.0, fraction))
    return QColor(round(255 + (base.red() - 255) * f), round(255 + (base.green() - 255) * f),
                  round(255 + (base.blue() - 255) * f))


def _fixed_table(rows: int, cols: int, parent: QWidget) -> QTableWidget:
    """A read-only table sized to its contents (no scroll bars: it is always 5 stages)."""
    table = QTableWidget(rows, cols, parent)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
    for r in range(rows):
        for c in range(cols):
            item = QTableWidgetItem("–")
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            table.setItem(r, c, item)
    # Exactly as tall as header + rows (AdjustToContents leaves a strip under the last row).
    table.setFixedHeight(table.horizontalHeader().sizeHint().height()
                         + rows * table.verticalHeader().defaultSectionSize()
                         + 2 * table.frameWidth())
    return table


class AgreementPanel(QWidget):
    """Accuracy, Cohen's kappa, macro-F1, per-stage F1 and the 5x5 confusion matrix."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.metrics: dict[str, Any] | None = None
        self.caveat = QLabel(CAVEAT, self)
        self.caveat.setWordWrap(True)
        self.caveat.setStyleSheet("color: #666666;")
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.values: dict[str, QLabel] = {}
        bold = QFont(self.font())
        bold.setBold(True)
        for key, text in (("accuracy", "Accuracy"), ("kappa", "Cohen's κ"),
                          ("macro_f1", "Macro-F1"), ("n_epochs", "Epochs compared")):
            label = QLabel("–", self)
            label.setFont(bold)
            self.values[key] = label
            form.addRow(text, label)
        self.f1_table = _fixed_table(2, len(STAGES), self)
        self.f1_table.setHorizontalHeaderLabels(list(STAGES))
        self.f1_table.setVerticalHeaderLabels(["F1", "Expert epochs"])
        self.confusion = _fixed_table(len(STAGES), len(STAGES), self)
        self.confusion.setHorizontalHeaderLabels(list(STAGES))
        self.confusion.setVerticalHeaderLabels(list(STAGES))
        self.confusion.setToolTip("Rows: the expert's stage. Columns: the model's stage. "
                                  "Shade: share of the expert's row.")
        self.empty = QLabel(NO_DATA, self)
        self.empty.setWordWrap(True)
        # Everything but the caveat and the 'no data' line: hidden while there is no data,
        # since a grid of dashes reads like a result.
        self.body = QWidget(self)
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(6)
        body.addLayout(form)
        body.addWidget(self._title("Per-stage F1"))
        body.addWidget(self.f1_table)
        body.addWidget(self._title("Confusion matrix"))
        body.addWidget(QLabel("Rows: expert · columns: model · shade: share of the row", self))
        body.addWidget(self.confusion)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addWidget(self.caveat)
        layout.addWidget(self.empty)
        layout.addWidget(self.body)
        layout.addStretch(1)
        self.update_metrics(None)

    def _title(self, text: str) -> QLabel:
        label = QLabel(text, self)
        font = QFont(label.font())
        font.setBold(True)
        label.setFont(font)
        return label

    def set_training_data_warning(self, warning: str | None) -> None:
        """Say loudly when the model was trained on this night (agreement is then no test)."""
        if warning:
            self.caveat.setText(f"⚠ {warning} {CAVEAT}")
            self.caveat.setStyleSheet("color: #b00020; font-weight: bold;")
        else:
            self.caveat.setText(CAVEAT)
            self.caveat.setStyleSheet("color: #666666;")

    def update_metrics(self, metrics: dict[str, Any] | None) -> None:
        """Show a ``stage_metrics`` dict; None when no epoch is scored by both."""
        self.metrics = metrics
        self.empty.setVisible(metrics is None)
        self.body.setVisible(metrics is not None)
        if metrics is None:
            return
        self.values["accuracy"].setText(_fmt(metrics["accuracy"], percent=True))
        self.values["kappa"].setText(_fmt(metrics["kappa"]))
        self.values["macro_f1"].setText(_fmt(metrics["macro_f1"]))
        excluded = int(metrics.get("excluded", 0))
        self.values["n_epochs"].setText(
            f"{metrics['n_epochs']}" + (f"  ({excluded} unscored/artefact left out)"
                                        if excluded else ""))
        labels = list(metrics.get("labels", STAGES))
        for c, stage in enumerate(labels):
            self.f1_table.item(0, c).setText(_fmt(metrics["per_stage_f1"].get(stage)))
            self.f1_table.item(1, c).setText(str(metrics["support"].get(stage, 0)))
        for r, row in enumerate(metrics["confusion"]):
            total = sum(row)
            for c, count in enumerate(row):
                item = self.confusion.item(r, c)
                share = count / total if total else 0.0
                # Shade by the share of the expert's row, not the raw count: N2 has most of
                # a night's epochs and would leave every other cell near white.
                # The square root lifts small shares: a 10 % confusion should be visible.
                depth = share ** 0.5
                base = _DIAGONAL if r == c else _OFF_DIAGONAL
                item.setText(str(count))
                item.setBackground(_shade(base, depth))
                item.setForeground(QColor("#ffffff" if depth > 0.7 else "#000000"))
                item.setToolTip(f"Expert {labels[r]}, model {labels[c]}: {count} epochs "
                                f"({share * 100:.0f} % of the expert's {labels[r]})")
