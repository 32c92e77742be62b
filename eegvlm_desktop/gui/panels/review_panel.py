"""The review queue: the epochs most worth a second look, and how far the scorer has got.

The order comes from :meth:`ModelLayer.review_queue` (disagreements with the expert first,
or least confident first) and is frozen until the data or the order is set again: rows that
jumped while the scorer relabelled them would make "next in queue" skip entries. A plain
view: the main window feeds it and tells it which epochs the expert has labelled.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from PySide6.QtCore import (QAbstractTableModel, QEvent, QModelIndex, QObject,
                            QPersistentModelIndex, Qt, Signal)
from PySide6.QtGui import QColor, QKeyEvent
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QTableView, QVBoxLayout, QWidget)

from eegvlm_desktop.core.stages import STAGE_COLORS, STAGES
from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.gui.views.hypnogram_view import format_clock

#: Order combo entries: label shown -> ModelLayer.review_queue order.
ORDERS: dict[str, str] = {"Disagreements first": "disagreement",
                          "Least confident first": "uncertainty"}
COLUMNS = ("Epoch", "Time", "Model", "Conf.", "Expert", "Why")
_Index = QModelIndex | QPersistentModelIndex


class _QueueModel(QAbstractTableModel):
    """Rows of the queue from flat per-epoch arrays: ~1000 rows cost nothing to show."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[int] = []
        self.model_stage: np.ndarray = np.array([], dtype=object)
        self.conf: np.ndarray = np.array([])
        self.expert: list[str] = []
        self.reasons: dict[int, str] = {}
        self.times: dict[int, str] = {}
        self.reviewed: set[int] = set()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802 (Qt naming)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        ep, col = self.rows[index.row()], index.column()
        model, expert = self.model_stage[ep], self.expert[ep]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return f"{ep + 1}" + (" ✓" if ep in self.reviewed else "")
            if col == 1:
                return self.times.get(ep, "")
            if col == 2:
                return model or "–"
            if col == 3:
                c = self.conf[ep]
                return "–" if not np.isfinite(c) else f"{c * 100:.0f} %"
            if col == 4:
                return expert if expert in STAGES or expert == "ART" else "–"
            # The Expert column already says what the expert scored; the cell keeps the part a
            # narrow panel has room for (the model's top two), the tooltip the full reason.
            return self.reasons.get(ep, "").split(";")[0]
        if role == Qt.ItemDataRole.DecorationRole and col in (2, 4):
            stage = model if col == 2 else expert
            return QColor(STAGE_COLORS[stage]) if stage in STAGE_COLORS else None
        if role == Qt.ItemDataRole.ForegroundRole and ep in self.reviewed:
            return QColor("#8a8a8a")  # done: still listed, but out of the way
        if role == Qt.ItemDataRole.ForegroundRole and col == 4 and model and \
                expert in STAGES and expert != model:
            return QColor("#b03a2e")  # the expert disagrees with the model
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"Epoch {ep + 1}: {self.reasons.get(ep, '')}" + \
                (" (reviewed)" if ep in self.reviewed else "")
        if role == Qt.ItemDataRole.UserRole:
            return ep
        return None

    def changed(self, row: int | None = None) -> None:
        """Repaint one row (or all rows)."""
        if not self.rows:
            return
        first, last = (0, len(self.rows) - 1) if row is None else (row, row)
        self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))


class ReviewPanel(QWidget):
    """A table of the review queue, its order, and 'reviewed k of n'.

    Epochs in the API are 0-based indices; the table shows them 1-based.
    """

    epochActivated = Signal(int)  # the user clicked a row or pressed Enter on it

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer: ModelLayer | None = None
        self.origin: datetime | None = None
        self.epoch_length = 30.0
        self._model = _QueueModel(self)
        self._row_of: dict[int, int] = {}
        self._current: int | None = None  # the epoch to keep selected across rebuilds
        self._order = "disagreement"
        self.order_combo = QComboBox(self)
        self.order_combo.addItems(list(ORDERS))
        self.order_combo.setToolTip("Which epochs to review first")
        self.order_combo.currentTextChanged.connect(self._on_order)
        self.progress = QLabel(self)
        self.table = QTableView(self)
        self.table.setModel(self._model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setCornerButtonEnabled(False)
        self.table.verticalHeader().hide()
        # Fixed row height and column widths: measuring 1000 rows' contents would cost more
        # than showing them.
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(self.fontMetrics().height() + 6)
        head = self.table.horizontalHeader()
        head.setHighlightSections(False)
        fm = self.fontMetrics()
        for col, sample in enumerate(("0000 ✓", "00:00:00", "■ N3", "100 %", "■ N3")):
            width = max(fm.horizontalAdvance(sample), fm.horizontalAdvance(COLUMNS[col])) + 10
            head.resizeSection(col, width)
        head.setStretchLastSection(True)
        self.table.clicked.connect(self._on_clicked)
        self.table.installEventFilter(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Order:", self))
        top.addWidget(self.order_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        self._update_progress()

    # ------------------------------------------------------------------ data
    def set_data(self, layer: ModelLayer, expert: Sequence[str], *,
                 origin: datetime | None = None, epoch_length: float = 30.0,
                 keep_reviewed: bool = False) -> None:
        """Rebuild the queue from a model layer and the expert's labels.

        Parameters
        ----------
        layer : ModelLayer
            The model's results; the queue holds every epoch it has scored.
        expert : sequence of str
            The expert's label per epoch (stages, ``'UNS'``, ``'ART'``).
        origin : datetime, optional
            Recording start, for clock times; elapsed time (H:MM:SS) when None.
        epoch_length : float
            Seconds per epoch.
        keep_reviewed : bool
            Keep the 'reviewed' marks of epochs still in the queue (e.g. when the same run
            has scored more epochs); by default a rebuild starts the count afresh.
        """
        self.layer, self.origin, self.epoch_length = layer, origin, float(epoch_length)
        if not keep_reviewed:
            self._model.reviewed = set()
        self._rebuild(expert)

    def refresh(self, expert: Sequence[str]) -> None:
        """Update labels, confidences and reasons after edits; the row order stays put."""
        if self.layer is None:
            return
        self._fill(expert)
        self._model.changed()
        self._update_progress()

    def _rebuild(self, expert: Sequence[str]) -> None:
        rows = [] if self.layer is None else self.layer.review_queue(expert, self._order)
        self._row_of = {ep: r for r, ep in enumerate(rows)}
        self._model.reviewed &= set(rows)
        self._model.beginResetModel()
        self._model.rows = rows
        self._fill(expert)
        self._model.endResetModel()
        self._update_progress()
        self.select_epoch(self._current)  # a reset drops the selection: put it back

    def _fill(self, expert: Sequence[str]) -> None:
        layer, m = self.layer, self._model
        assert layer is not None
        m.expert = [str(s) for s in expert]
        m.model_stage = layer.stages()
        m.conf = layer.confidence()
        m.reasons = {ep: layer.reason(ep, m.expert[ep]) for ep in m.rows}
        m.times = {ep: format_clock(self.origin, ep * self.epoch_length) for ep in m.rows}

    @property
    def queue(self) -> list[int]:
        """The epochs of the queue, in its current order."""
        return list(self._model.rows)

    @property
    def reviewed(self) -> frozenset[int]:
        return frozenset(self._model.reviewed)

    # ------------------------------------------------------------------ order
    @property
    def order(self) -> str:
        """``'disagreement'`` or ``'uncertainty'`` (see ModelLayer.review_queue)."""
        return self._order

    def set_order(self, order: str) -> None:
        """Choose the queue order by its ModelLayer name; rebuilds the queue."""
        labels = {v: k for k, v in ORDERS.items()}
        if order not in labels:
            raise ValueError(f"Invalid value for the 'order' parameter. Allowed values are "
                             f"{', '.join(labels)}, but got {order!r}.")
        self.order_combo.setCurrentText(labels[order])  # -> _on_order

    def _on_order(self, label: str) -> None:
        self._order = ORDERS[label]
        if self.layer is not None:
            self._rebuild(self._model.expert)

    # ------------------------------------------------------------------ review progress
    def mark_reviewed(self, epoch: int) -> None:
        """Count ``epoch`` as reviewed (the expert labelled it); ignored if not queued."""
        row = self._row_of.get(int(epoch))
        if row is None or epoch in self._model.reviewed:
            return
        self._model.reviewed.add(int(epoch))
        self._model.changed(row)
        self._update_progress()

    def next_epoch(self, after: int | None = None) -> int | None:
        """The next queue entry not yet reviewed after ``after`` (wrapping to the top).

        ``after`` None, or not in the queue, starts at the top. None when every entry is
        reviewed.
        """
        rows, done = self._model.rows, self._model.reviewed
        start = self._row_of.get(after, -1) + 1 if after is not None else 0
        for ep in rows[start:] + rows[:start]:
            if ep not in done and ep != after:
                return ep
        return None

    def _update_progress(self) -> None:
        n = len(self._model.rows)
        if self.layer is None or n == 0:
            self.progress.setText("No epochs scored by the model yet.")
            return
        text = f"Reviewed {len(self._model.reviewed)} of {n}"
        if self._order == "disagreement":
            exp = self._model.expert
            n_dis = sum(1 for ep in self._model.rows if self._model.model_stage[ep]
                        and exp[ep] in STAGES and exp[ep] != self._model.model_stage[ep])
            text += f" · {n_dis} disagreement" + ("" if n_dis == 1 else "s")
        self.progress.setText(text)

    # ------------------------------------------------------------------ selection
    def select_epoch(self, epoch: int | None) -> None:
        """Highlight ``epoch``'s row (no signal); clears the selection if it is not queued."""
        self._current = None if epoch is None else int(epoch)
        row = None if epoch is None else self._row_of.get(int(epoch))
        if row is None:
            self.table.clearSelection()
            return
        index = self._model.index(row, 0)
        self.table.selectRow(row)
        self.table.scrollTo(index, QAbstractItemView.ScrollHint.EnsureVisible)

    @property
    def selected_epoch(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return self._model.rows[rows[0].row()] if rows else None

    def _on_clicked(self, index: QModelIndex) -> None:
        self._current = self._model.rows[index.row()]
        self.epochActivated.emit(self._current)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        # Enter on the current row: the keyboard twin of a click. (QAbstractItemView's
        # 'activated' would also fire on double-click, i.e. twice after a click.)
        if obj is self.table and event.type() == QEvent.Type.KeyPress and \
                isinstance(event, QKeyEvent) and \
                event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            index = self.table.currentIndex()
            if index.isValid():
                self._current = self._model.rows[index.row()]
                self.epochActivated.emit(self._current)
                return True
        return super().eventFilter(obj, event)
