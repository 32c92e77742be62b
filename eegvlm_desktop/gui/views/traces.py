"""One graphics item that draws every channel's trace of the visible page.

Why not one ``PlotDataItem`` per channel: measured with ``bench/viewer.py`` (8 h, 10 ch,
256 Hz, 1600x900), the per-curve machinery (bounds with nanmin/nanmax, path building,
per-item bounding rects) cost more than the pixels themselves and kept a page step above
the 15 ms target. This item takes already min/max-decimated data (~2 points per pixel
column), fills one QPolygonF per channel through pyqtgraph's zero-copy helper and draws
them with ``drawPolyline``; its bounding rect is the page, known without looking at data.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pyqtgraph.functions as fn
from PySide6.QtCore import QRectF
from PySide6.QtGui import QPen


class TraceItem(pg.GraphicsObject):
    """Stacked polylines: trace ``k`` is drawn at ``y + offsets[k]`` with ``pens[k]``."""

    def __init__(self) -> None:
        super().__init__()
        self._polys: list = []
        self._pens: list[QPen] = []
        self._rect = QRectF()
        self.n_traces = 0

    def set_traces(self, x: np.ndarray, ys: np.ndarray, offsets: list[float],
                   pens: list[QPen], rect: QRectF) -> None:
        """Replace all traces; ``ys`` has one row per trace, already scaled to lanes."""
        self._polys = [fn.arrayToQPolygonF(x, np.asarray(y, dtype=float) + off)
                       for y, off in zip(ys, offsets)]
        self._pens = pens
        self.n_traces = len(self._polys)
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self.update()

    def trace_data(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of trace ``k`` as drawn, offset included (for tests and exports)."""
        mem = fn.ndarray_from_qpolygonf(self._polys[k])
        return mem[:, 0].copy(), mem[:, 1].copy()

    def paint(self, painter, *args):  # noqa: D401 - Qt override
        for pen, poly in zip(self._pens, self._polys):
            painter.setPen(pen)
            painter.drawPolyline(poly)

    def boundingRect(self):  # noqa: N802
        return self._rect
