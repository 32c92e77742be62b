"""Whole-night hypnogram: AASM order (W on top, R, N1, N2, N3), stage colours, navigation.

Unscored epochs are drawn as a light hatched column across all levels so that gaps in
the scoring stand out; artefact epochs sit on their own grey row under N3.
"""
from __future__ import annotations

from datetime import timedelta

import pyqtgraph as pg
from PySide6.QtCore import QLineF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPicture

from ..core.hypnogram import Hypnogram
from ..core.stages import ART, HYPNO_ORDER, STAGE_COLORS, UNS
from .signal_view import ClockAxis

#: y level per label: W on top (4) down to N3 (0); artefacts below N3.
LEVEL = {s: len(HYPNO_ORDER) - 1 - i for i, s in enumerate(HYPNO_ORDER)}
LEVEL[ART] = -1


class _StageBars(pg.GraphicsObject):
    """All epochs painted into one QPicture: rebuilding ~3000 rectangles takes ~ms."""

    def __init__(self) -> None:
        super().__init__()
        self._picture = QPicture()
        self._rect = QRectF()

    def set_hypnogram(self, hyp: Hypnogram) -> None:
        self.prepareGeometryChange()
        ep = hyp.epoch_length
        # Runs of equal labels become one rectangle each, batched per stage, and the step
        # line is one drawLines call: a replay costs a handful of paint ops, not thousands.
        rects: dict[str, list[QRectF]] = {}
        for onset, dur, stage in hyp.events():
            if stage == UNS:
                rects.setdefault(stage, []).append(QRectF(onset, -1.4, dur, 6.8))
            else:
                y = LEVEL[stage]
                rects.setdefault(stage, []).append(QRectF(onset, y - 0.35, dur, 0.7))
        lines: list[QLineF] = []
        prev = None
        for i, s in enumerate(hyp.stages):
            if s == UNS:
                prev = None
                continue
            y, x = LEVEL[s], hyp.onset(i)
            if prev is not None and prev != y:
                lines.append(QLineF(x, prev, x, y))
            lines.append(QLineF(x, y, x + ep, y))
            prev = y
        pic = QPicture()
        p = QPainter(pic)
        p.setPen(Qt.PenStyle.NoPen)
        for stage, rs in rects.items():
            if stage == UNS:
                p.setBrush(QBrush(QColor("#bdbdbd"), Qt.BrushStyle.BDiagPattern))
            else:
                p.setBrush(QBrush(QColor(STAGE_COLORS[stage])))
            p.drawRects(rs)
        pen = QPen(QColor("#333333"))
        pen.setCosmetic(True)
        pen.setWidthF(1.0)
        p.setPen(pen)
        if lines:
            p.drawLines(lines)
        p.end()
        self._picture = pic
        self._rect = QRectF(hyp.start, -1.5, max(hyp.duration, ep), 7.0)
        self.update()

    def paint(self, painter, *args):  # noqa: D401 (Qt override)
        self._picture.play(painter)

    def boundingRect(self):  # noqa: N802
        return self._rect


class HypnogramViewBox(pg.ViewBox):
    """Click or drag anywhere to navigate; no zoom or pan (the whole night always fits)."""

    timeRequested = Signal(float)

    def __init__(self) -> None:
        super().__init__(enableMouse=False, enableMenu=False)

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            self.timeRequested.emit(float(self.mapSceneToView(ev.scenePos()).x()))
            ev.accept()

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            self.timeRequested.emit(float(self.mapSceneToView(ev.scenePos()).x()))
            ev.accept()
        else:
            ev.ignore()

    def wheelEvent(self, ev, axis=None):  # noqa: N802
        ev.ignore()


class HypnogramView(pg.PlotWidget):
    """The whole night at a glance, with a marker for the current epoch.

    Signals
    -------
    epochRequested(int)
        The user clicked or dragged to an epoch.
    """

    epochRequested = Signal(int)

    def __init__(self, parent=None) -> None:
        self._axis = ClockAxis(orientation="bottom")
        self._vb = HypnogramViewBox()
        super().__init__(parent, viewBox=self._vb, axisItems={"bottom": self._axis})
        self.setBackground("w")
        self.hideButtons()
        self.setMenuEnabled(False)
        left = self.plotItem.getAxis("left")
        left.setTicks([[(LEVEL[s], s) for s in HYPNO_ORDER] + [(LEVEL[ART], "Art")], []])
        left.setWidth(40)
        # Neither axis changes while scoring: paint them from cached pixmaps.
        for axis in (left, self._axis):
            axis.setCacheMode(axis.CacheMode.DeviceCoordinateCache)
        self._bars = _StageBars()
        # Cache the painted night as a pixmap: moving the marker then repaints from the
        # cache instead of replaying every epoch.
        self._bars.setCacheMode(self._bars.CacheMode.DeviceCoordinateCache)
        self.plotItem.addItem(self._bars)
        self._window = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(80, 80, 80, 40),
                                           pen=pg.mkPen(None))
        self.plotItem.addItem(self._window)
        self._marker = pg.InfiniteLine(angle=90, movable=False,
                                       pen=pg.mkPen("#e4002b", width=2))
        self.plotItem.addItem(self._marker)
        self.plotItem.setYRange(-1.5, 4.6, padding=0)
        self.setMinimumHeight(130)
        self._vb.timeRequested.connect(self._on_time)
        self.hypnogram: Hypnogram | None = None

    def set_hypnogram(self, hyp: Hypnogram, origin=None) -> None:
        """Show ``hyp``; ``origin`` (datetime) makes the axis show clock time."""
        self.hypnogram = hyp
        self._axis.origin = origin.replace(tzinfo=None) if origin is not None else None
        self.plotItem.setXRange(hyp.start, hyp.start + hyp.duration, padding=0.005)
        self.redraw()

    def redraw(self, indices: list[int] | None = None) -> None:
        """Repaint after labels changed (the whole picture: cheap, see _StageBars)."""
        if self.hypnogram is not None:
            self._bars.set_hypnogram(self.hypnogram)

    def set_position(self, epoch: int, t0: float, t1: float) -> None:
        """Mark the current epoch and shade the visible window [t0, t1]."""
        if self.hypnogram is None:
            return
        ep = self.hypnogram.epoch_length
        self._marker.setPos(self.hypnogram.onset(epoch) + ep / 2)
        self._window.setRegion((t0, t1))

    def _on_time(self, t: float) -> None:
        if self.hypnogram is not None:
            self.epochRequested.emit(self.hypnogram.epoch_at(t))


def format_clock(origin, seconds: float) -> str:
    """Clock time of ``seconds`` after ``origin`` (or elapsed time when no origin)."""
    if origin is None:
        s = int(seconds)
        return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return (origin.replace(tzinfo=None) + timedelta(seconds=float(seconds))).strftime("%H:%M:%S")

