"""Live sleep statistics (TIB, TST, SE, SOL, WASO, REM latency, per-stage minutes and %).

The numbers come from ``core.stats.sleep_statistics`` (YASA), computed on the job worker
so a relabel never blocks the GUI; this widget only displays the latest result.
"""
from __future__ import annotations

import math

from PySide6.QtWidgets import (QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from eegvlm_desktop.core.hypnogram.stats import STAT_LABELS


class StatsPanel(QWidget):
    """A two-column table of sleep statistics plus a line about the scoring's origin."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(len(STAT_LABELS), 2, self)
        self.table.setHorizontalHeaderLabels(["Statistic", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(
            1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setFocusPolicy(self.table.focusPolicy().NoFocus)
        self._rows = {key: i for i, key in enumerate(STAT_LABELS)}
        for key, i in self._rows.items():
            self.table.setItem(i, 0, QTableWidgetItem(STAT_LABELS[key]))
            self.table.setItem(i, 1, QTableWidgetItem("–"))
        self.source = QLabel(self)
        self.source.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addWidget(self.source)
        self.values: dict[str, float] = {}

    def set_stats(self, stats: dict[str, float]) -> None:
        """Show a result of ``sleep_statistics``; NaN shows as an en dash."""
        self.values = dict(stats)
        for key, row in self._rows.items():
            v = stats.get(key, math.nan)
            text = "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"
            self.table.item(row, 1).setText(text)

    def set_source_text(self, text: str) -> None:
        self.source.setText(text)
