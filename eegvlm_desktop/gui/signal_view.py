"""The stacked-channel signal view: one lane per channel, one page at a time.

Performance follows mne-qt-browser: only the visible page is fetched (from the block cache
of :class:`~eegvlm_desktop.core.display.DisplaySource`), one curve per channel, and
pyqtgraph's "peak" (min/max) downsampling keeps spikes visible at ~2 points per pixel.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal

from ..core.display import DisplaySource
from ..core.recording import Recording

#: Default lane height in display units per channel type (µV for electrophysiology): a
#: signal of +-scale/2 fills its lane. Chosen so typical N3 delta (~150 µV) stays readable.
DEFAULT_SCALES = {"eeg": 150.0, "eog": 300.0, "emg": 100.0, "ecg": 2000.0}
GAIN_STEP = 1.25
CURVE_PENS = {"eeg": "#1f2d5a", "eog": "#2b6e3f", "emg": "#7a3b14", "ecg": "#8a1c4a"}


class ClockAxis(pg.AxisItem):
    """Bottom axis showing clock time (HH:MM:SS) when the recording has a start time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.origin: datetime | None = None

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt/pyqtgraph naming)
        if self.origin is None:
            return [f"{int(v // 3600):d}:{int(v % 3600 // 60):02d}:{v % 60:04.1f}"
                    if spacing < 1 else
                    f"{int(v // 3600):d}:{int(v % 3600 // 60):02d}:{int(v % 60):02d}"
                    for v in values]
        return [(self.origin + timedelta(seconds=float(v))).strftime("%H:%M:%S") for v in values]


class LaneViewBox(pg.ViewBox):
    """A view box that pans/zooms nothing: the wheel sets one lane's gain instead."""

    laneWheel = Signal(int, int)  # lane index, +1 (bigger) / -1 (smaller)
    clickedAt = Signal(float)  # time (s) of a left click

    def __init__(self) -> None:
        super().__init__(enableMouse=False, enableMenu=False)

    def wheelEvent(self, ev, axis=None):  # noqa: N802
        lane = int(round(-self.mapSceneToView(ev.scenePos()).y()))
        self.laneWheel.emit(lane, 1 if ev.delta() > 0 else -1)
        ev.accept()

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            self.clickedAt.emit(float(self.mapSceneToView(ev.scenePos()).x()))
            ev.accept()
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        ev.ignore()


class SignalView(pg.PlotWidget):
    """Stacked traces of the visible channels for one time window.

    Signals
    -------
    clickedAt(float)
        Time in seconds where the user clicked (the window navigates there).
    """

    clickedAt = Signal(float)
    scalesChanged = Signal()

    def __init__(self, parent=None) -> None:
        self._axis = ClockAxis(orientation="bottom")
        self._vb = LaneViewBox()
        super().__init__(parent, viewBox=self._vb, axisItems={"bottom": self._axis})
        self.setBackground("w")
        self.setMenuEnabled(False)
        self.hideButtons()
        self.plotItem.showGrid(x=True, y=False, alpha=0.12)
        self.plotItem.getAxis("left").setWidth(110)
        self._vb.laneWheel.connect(self._on_lane_wheel)
        self._vb.clickedAt.connect(self.clickedAt)
        self.recording: Recording | None = None
        self.source: DisplaySource | None = None
        self.order: list[int] = []  # visible channels, top to bottom
        self.scales: dict[int, float] = {}
        self._curves: dict[int, pg.PlotDataItem] = {}
        self._t0 = 0.0
        self._window = 30.0
        self._epoch_length = 30.0
        # Epoch boundaries and scale bars are single multi-segment items (connect="pairs"):
        # one item each instead of one per line keeps a page step cheap.
        self._grid = pg.PlotDataItem(pen=pg.mkPen("#888888", width=1.5), connect="pairs")
        self._bars = pg.PlotDataItem(pen=pg.mkPen("#c0392b", width=2), connect="pairs")
        self._grid.setZValue(-5)
        self.plotItem.addItem(self._grid)
        self.plotItem.addItem(self._bars)
        self._bar_labels: list[pg.TextItem] = []
        self._current = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(255, 235, 150, 60),
                                            pen=pg.mkPen(None))
        self._current.setZValue(-10)
        self.plotItem.addItem(self._current)

    # ----------------------------------------------------------------- set-up
    def set_recording(self, recording: Recording, source: DisplaySource,
                      epoch_length: float = 30.0) -> None:
        """Show ``recording``: all channels visible, default scales per channel type."""
        for curve in self._curves.values():
            self.plotItem.removeItem(curve)
        self._curves.clear()
        self.recording, self.source = recording, source
        self._epoch_length = epoch_length
        self._axis.origin = (recording.meas_date.replace(tzinfo=None)
                             if recording.meas_date is not None else None)
        self.scales = {i: self._default_scale(i) for i in range(len(recording.ch_names))}
        self.set_order(list(range(len(recording.ch_names))))

    def _default_scale(self, ch: int) -> float:
        kind = self.recording.ch_types[ch]
        if kind in DEFAULT_SCALES:
            return DEFAULT_SCALES[kind]
        # Non-electrophysiology channels (temperature, respiration, markers) have no
        # natural µV scale: use the spread of the first 10 minutes.
        stop = min(self.recording.n_times, int(600 * self.recording.sfreq))
        x = self.recording.get_data([ch], 0, stop)[0]
        spread = float(np.subtract(*np.percentile(x, [99, 1]))) if x.size else 0.0
        return spread * 1.2 if spread > 0 else 1.0

    def set_order(self, order: list[int]) -> None:
        """Show exactly the channels in ``order`` (top to bottom); others are hidden."""
        self.order = list(order)
        for ch in list(self._curves):
            if ch not in self.order:
                self.plotItem.removeItem(self._curves.pop(ch))
        for lane, ch in enumerate(self.order):
            if ch not in self._curves:
                kind = self.recording.ch_types[ch]
                curve = pg.PlotDataItem(pen=pg.mkPen(CURVE_PENS.get(kind, "#333333"), width=1),
                                        skipFiniteCheck=True)
                curve.setDownsampling(auto=True, method="peak")
                curve.setClipToView(True)
                self.plotItem.addItem(curve)
                self._curves[ch] = curve
            self._curves[ch].setPos(0, -lane)
        names = self.recording.ch_names
        self.plotItem.getAxis("left").setTicks([[(-lane, names[ch]) for lane, ch in
                                                 enumerate(self.order)], []])
        self.plotItem.setYRange(-len(self.order) + 0.5, 0.5, padding=0)
        self._rebuild_bar_labels()
        self.refresh()

    # ----------------------------------------------------------------- gain
    def change_gain(self, factor: float, channels: list[int] | None = None) -> None:
        """Multiply the gain of ``channels`` (default: all visible) by ``factor``."""
        for ch in (self.order if channels is None else channels):
            self.scales[ch] = self.scales[ch] / factor
        self.scalesChanged.emit()
        self.refresh()

    def _on_lane_wheel(self, lane: int, direction: int) -> None:
        if 0 <= lane < len(self.order):
            self.change_gain(GAIN_STEP if direction > 0 else 1 / GAIN_STEP, [self.order[lane]])

    # ----------------------------------------------------------------- drawing
    def show_window(self, t0: float, window: float, current: tuple[float, float]) -> None:
        """Show ``window`` seconds from ``t0``; ``current`` (start, stop) is highlighted."""
        self._t0, self._window = float(t0), float(window)
        self._current.setRegion(current)
        self._current.setVisible(window > (current[1] - current[0]) + 1e-6)
        self.refresh()

    def refresh(self) -> None:
        """Redraw the visible page from the (cached) display data."""
        if self.recording is None or not self.order:
            return
        t0, t1 = self._t0, min(self._t0 + self._window, self.recording.duration)
        times, data = self.source.get(self.order, t0, t1)
        for lane, ch in enumerate(self.order):
            y = data[lane]
            if self.source.get_filter(ch).highpass is None and y.size:
                # Unfiltered channels (EMG envelope, temperature) carry a DC level: centre
                # them on the page so they stay in their lane.
                y = y - np.median(y)
            self._curves[ch].setData(times, y / self.scales[ch])
        self.plotItem.setXRange(self._t0, self._t0 + self._window, padding=0)
        self._draw_grid(self._t0, self._t0 + self._window)
        self._draw_scale_bars(self._t0 + self._window)

    def _draw_grid(self, t0: float, t1: float) -> None:
        first = np.ceil(t0 / self._epoch_length) * self._epoch_length
        edges = np.arange(first, t1 + 1e-9, self._epoch_length)
        top, bottom = 0.5, -len(self.order) + 0.5
        xs = np.repeat(edges, 2)
        ys = np.tile([top, bottom], len(edges))
        self._grid.setData(xs, ys)

    def _rebuild_bar_labels(self) -> None:
        for item in self._bar_labels:
            self.plotItem.removeItem(item)
        self._bar_labels = []
        for _ in self.order:
            label = pg.TextItem(color="#c0392b", anchor=(1, 0.5))
            self.plotItem.addItem(label)
            self._bar_labels.append(label)

    def _draw_scale_bars(self, t_right: float) -> None:
        """A vertical bar of half a lane per channel with its amplitude in display units."""
        x = t_right - self._window * 0.004
        xs, ys = [], []
        for lane, ch in enumerate(self.order):
            xs += [x, x]
            ys += [-lane - 0.25, -lane + 0.25]
            unit = self.recording.units[ch] or "units"
            self._bar_labels[lane].setText(f"{_fmt(self.scales[ch] / 2)} {unit}")
            self._bar_labels[lane].setPos(x - self._window * 0.003, -lane)
        self._bars.setData(np.array(xs), np.array(ys))

    def lane_of_channel(self, ch: int) -> int:
        return self.order.index(ch)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v < 10 else f"{v:.0f}"
