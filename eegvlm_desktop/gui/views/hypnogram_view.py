"""Whole-night hypnogram: AASM order (W on top, R, N1, N2, N3), stage colours, navigation.

Unscored epochs are drawn as a light hatched column across all levels so that gaps in
the scoring stand out; artefact epochs sit on their own grey row under N3.

With a :class:`~eegvlm_desktop.core.staging.model_layer.ModelLayer` set, the view also shows the
model: its hypnogram as a dashed line on the same levels, a hypnodensity strip (the five
stage probabilities stacked per epoch) under the artefact row, and red ticks above W where
model and expert disagree. Each is one cached QPicture, rebuilt only when it changes.
"""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPicture

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.stages import ART, HYPNO_ORDER, STAGE_COLORS, STAGES, UNS
from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.gui.throttle import Throttled
from eegvlm_desktop.gui.views.signal_view import ClockAxis

#: y level per label: W on top (4) down to N3 (0); artefacts below N3.
LEVEL = {s: len(HYPNO_ORDER) - 1 - i for i, s in enumerate(HYPNO_ORDER)}
LEVEL[ART] = -1
#: The hypnodensity strip spans y in [DENSITY_BOTTOM, DENSITY_TOP], below the artefact row.
DENSITY_TOP, DENSITY_BOTTOM = -1.65, -3.25
#: Disagreement ticks span y in [TICK_BOTTOM, TICK_TOP], above the W row (4 +- 0.35).
TICK_BOTTOM, TICK_TOP = 4.5, 4.9
MODEL_PEN = "#7b2cbf"  # purple: apart from the black expert line and every stage
TICK_COLOR = "#c8102e"
#: A burst of per-batch updates (a whole-night run sends ~50) is redrawn at most this often.
MODEL_REDRAW_MS = 150
_DENSITY_ROWS = 96  # vertical resolution of the strip's image: ~1 % per row


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


class _PictureItem(pg.GraphicsObject):
    """A prepared QPicture (over an optional image), painted from a device pixmap cache.

    The cache makes marker moves cheap; the image is kept out of the QPicture because
    recording one into a picture copies it (~3 ms for a night's hypnodensity).
    """

    def __init__(self) -> None:
        super().__init__()
        self._picture = QPicture()
        self._rect = QRectF()
        self._image: tuple[QImage, QRectF] | None = None
        self.n_shapes = 0  # what the picture holds (epochs, runs...), for tests
        self.setCacheMode(self.CacheMode.DeviceCoordinateCache)

    def set_picture(self, picture: QPicture, rect: QRectF, n_shapes: int,
                    image: tuple[QImage, QRectF] | None = None) -> None:
        self.prepareGeometryChange()
        self._picture, self._rect, self.n_shapes = picture, rect, n_shapes
        self._image = image
        self.update()

    def paint(self, painter, *args):  # noqa: D401 (Qt override)
        if self._image is not None:
            # Smooth scaling averages epochs that share a pixel column instead of dropping.
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self._image[1], self._image[0])
        self._picture.play(painter)

    def boundingRect(self):  # noqa: N802
        return self._rect


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) indices of the runs of True in ``mask``."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _cosmetic_pen(color: str, width: float = 1.0) -> QPen:
    pen = QPen(QColor(color))
    pen.setCosmetic(True)
    pen.setWidthF(width)
    return pen


def _model_line(hyp: Hypnogram, model: np.ndarray) -> tuple[QPicture, QRectF, int]:
    """The model's stages as a dashed step line: one polyline per run of scored epochs."""
    y = np.array([LEVEL.get(s, np.nan) for s in model], dtype=float)
    pic = QPicture()
    p = QPainter(pic)
    pen = _cosmetic_pen(MODEL_PEN, 1.3)
    pen.setDashPattern([4.0, 3.0])
    p.setPen(pen)
    starts, stops = _runs(np.isfinite(y))
    for a, b in zip(starts, stops):
        # Two points per epoch (onset, end): a polyline through them is the step line, and
        # one polyline per run keeps the dash pattern continuous across epochs.
        xs = np.repeat(hyp.onset(0) + np.arange(a, b + 1) * hyp.epoch_length, 2)[1:-1]
        p.drawPolyline(pg.functions.arrayToQPolygonF(xs, np.repeat(y[a:b], 2)))
    p.end()
    return pic, QRectF(hyp.start, -0.5, max(hyp.duration, hyp.epoch_length), 5.0), len(starts)


def _density_image(proba: np.ndarray) -> QImage:
    """Stage probabilities as an image: one column per epoch, HYPNO_ORDER top to bottom.

    Row 0 is the *bottom* of the strip (N3): the view's y axis points up. Columns where
    the model has not run are transparent.
    """
    order = [STAGES.index(s) for s in HYPNO_ORDER]
    p = np.nan_to_num(proba[:, order], nan=0.0).clip(0.0, None)
    total = p.sum(axis=1, keepdims=True)
    cum = np.cumsum(p / np.where(total > 0, total, 1.0), axis=1)  # (n, 5), top stage first
    frac = 1.0 - (np.arange(_DENSITY_ROWS) + 0.5) / _DENSITY_ROWS  # row 0 = bottom
    idx = np.minimum((cum[None, :, :] < frac[:, None, None]).sum(axis=2), len(order) - 1)
    lut = np.array([[*QColor(STAGE_COLORS[s]).getRgb()[:3], 255] for s in HYPNO_ORDER],
                   dtype=np.uint8)
    rgba = lut[idx]  # (rows, n, 4)
    rgba[:, ~(np.isfinite(proba).all(axis=1) & (total[:, 0] > 0)), 3] = 0
    rgba = np.ascontiguousarray(rgba)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def _density_picture(hyp: Hypnogram, proba: np.ndarray
                     ) -> tuple[QPicture, QRectF, int, tuple[QImage, QRectF] | None]:
    """The hypnodensity strip: one image stretched over the night, in a thin frame."""
    rect = QRectF(hyp.start, DENSITY_BOTTOM, hyp.duration, DENSITY_TOP - DENSITY_BOTTOM)
    pic = QPicture()
    p = QPainter(pic)
    p.setPen(_cosmetic_pen("#9e9e9e"))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(rect)
    p.end()
    image = (_density_image(proba), rect) if len(proba) else None
    return (pic, rect.adjusted(0, -0.05, 0, 0.05), int(np.isfinite(proba).all(axis=1).sum()),
            image)


def _ticks_picture(hyp: Hypnogram, mask: np.ndarray) -> tuple[QPicture, QRectF, int]:
    """One red tick per run of disagreeing epochs, at least a pixel wide (cosmetic pen)."""
    ep = hyp.epoch_length
    rects = [QRectF(hyp.start + a * ep, TICK_BOTTOM, (b - a) * ep, TICK_TOP - TICK_BOTTOM)
             for a, b in zip(*(r.tolist() for r in _runs(mask)))]
    pic = QPicture()
    p = QPainter(pic)
    p.setPen(_cosmetic_pen(TICK_COLOR))
    p.setBrush(QColor(TICK_COLOR))
    if rects:
        p.drawRects(rects)
    p.end()
    rect = QRectF(hyp.start, TICK_BOTTOM - 0.05, hyp.duration, TICK_TOP - TICK_BOTTOM + 0.1)
    return pic, rect, len(rects)


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
        left.setWidth(46)  # room for "model"; the ticks are set by _layout_rows
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
        self.setMinimumHeight(130)
        self._vb.timeRequested.connect(self._on_time)
        self.hypnogram: Hypnogram | None = None
        # The model layer: three cached pictures over the expert hypnogram.
        self.model_layer: ModelLayer | None = None
        self.disagreement_mask: np.ndarray | None = None  # what the ticks show
        self._model_line = _PictureItem()
        self._density = _PictureItem()
        self._ticks = _PictureItem()
        for z, item in enumerate((self._model_line, self._density, self._ticks)):
            item.setZValue(1 + z)
            item.setVisible(False)
            self.plotItem.addItem(item)
        self._show = {"model": True, "density": True, "ticks": True}
        # Throttle, not debounce: the first change of a burst is drawn after at most
        # MODEL_REDRAW_MS, so a long run still shows progress while it streams in.
        self._model_redraw = Throttled(self._draw_model, MODEL_REDRAW_MS, self)
        self._rows: tuple[bool, bool] | None = None
        self._layout_rows()

    def set_hypnogram(self, hyp: Hypnogram, origin=None) -> None:
        """Show ``hyp`` and redraw on its changes; ``origin`` (datetime): clock-time axis."""
        if self.hypnogram is not None:
            self.hypnogram.changed.disconnect(self.redraw)
        self.hypnogram = hyp
        hyp.changed.connect(self.redraw)  # held weakly: a closed view is never called
        self._axis.origin = origin.replace(tzinfo=None) if origin is not None else None
        self.plotItem.setXRange(hyp.start, hyp.start + hyp.duration, padding=0.005)
        if self.model_layer is not None and len(self.model_layer) != hyp.n_epochs:
            self.set_model_layer(None)  # a layer of another night: never mix it in
        self.redraw()
        self._draw_model()

    def redraw(self, indices: list[int] | None = None) -> None:
        """Repaint after labels changed (the whole picture: cheap, see _StageBars).

        The disagreement ticks follow the expert's labels, so they are redrawn too.
        """
        if self.hypnogram is not None:
            self._bars.set_hypnogram(self.hypnogram)
            self._draw_ticks()

    # ----------------------------------------------------------------- model layer
    def set_model_layer(self, layer: ModelLayer | None) -> None:
        """Show ``layer`` (the model's probabilities per epoch) over the hypnogram; None hides.

        The view subscribes to the layer's changes (and unsubscribes from the previous
        layer); bursts of changes are redrawn at most every ``MODEL_REDRAW_MS`` ms.
        """
        if layer is not None and self.hypnogram is not None \
                and len(layer) != self.hypnogram.n_epochs:
            raise ValueError(f"The model layer has {len(layer)} epochs but the hypnogram "
                             f"{self.hypnogram.n_epochs}: they are not of the same night.")
        if self.model_layer is not None:
            self.model_layer.changed.disconnect(self._on_layer_event)
        self.model_layer = layer
        if layer is not None:
            layer.changed.connect(self._on_layer_event)
        self._model_redraw.cancel()
        self._draw_model()

    def set_model_visible(self, visible: bool) -> None:
        """Show or hide the model's hypnogram line."""
        self._set_shown("model", visible)

    def set_hypnodensity_visible(self, visible: bool) -> None:
        """Show or hide the hypnodensity strip (the view's y range shrinks without it)."""
        self._set_shown("density", visible)

    def set_disagreements_visible(self, visible: bool) -> None:
        """Show or hide the ticks marking epochs where model and expert disagree."""
        self._set_shown("ticks", visible)

    def _set_shown(self, key: str, visible: bool) -> None:
        self._show[key] = bool(visible)
        self._apply_visibility()

    def _on_layer_event(self, indices: list[int]) -> None:
        self.redraw_model()

    def redraw_model(self) -> None:
        """Redraw the model's items within ``MODEL_REDRAW_MS`` (bursts are coalesced).

        The view already does this on the layer's change events; calling it again is cheap.
        """
        self._model_redraw()

    def _draw_model(self) -> None:
        hyp, layer = self.hypnogram, self.model_layer
        if hyp is not None and layer is not None:
            self._model_line.set_picture(*_model_line(hyp, layer.stages()))
            self._density.set_picture(*_density_picture(hyp, layer.proba))
        self._draw_ticks()
        self._apply_visibility()

    def _draw_ticks(self) -> None:
        hyp, layer = self.hypnogram, self.model_layer
        if hyp is None or layer is None:
            self.disagreement_mask = None
            return
        self.disagreement_mask = layer.disagreements(hyp.stages)
        self._ticks.set_picture(*_ticks_picture(hyp, self.disagreement_mask))

    def _apply_visibility(self) -> None:
        on = self.model_layer is not None and self.hypnogram is not None
        shown = {k: on and v for k, v in self._show.items()}
        for key, item in (("model", self._model_line), ("density", self._density),
                          ("ticks", self._ticks)):
            item.setVisible(shown[key])
        self._layout_rows(shown["density"], shown["ticks"])

    def _layout_rows(self, density: bool = False, ticks: bool = False) -> None:
        """Y range and left labels: room for the strip and the ticks only when shown."""
        if (density, ticks) == self._rows:
            return  # a new tick set would repaint the cached axis on every model update
        self._rows = (density, ticks)
        labels = [(LEVEL[s], s) for s in HYPNO_ORDER] + [(LEVEL[ART], "Art")]
        if density:
            labels.append(((DENSITY_TOP + DENSITY_BOTTOM) / 2, "model"))
        self.plotItem.getAxis("left").setTicks([labels, []])
        self.plotItem.setYRange(DENSITY_BOTTOM - 0.1 if density else -1.5,
                                TICK_TOP + 0.1 if ticks else 4.6, padding=0)

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

