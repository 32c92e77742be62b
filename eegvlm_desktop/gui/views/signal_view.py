"""The stacked-channel signal view: one lane per channel, one page at a time.

Performance follows mne-qt-browser: only the visible page is fetched (from the block cache
of :class:`~eegvlm_desktop.core.recording.display.DisplaySource`), one curve per channel, and
pyqtgraph's "peak" (min/max) downsampling keeps spikes visible at ~2 points per pixel.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QPen

from eegvlm_desktop.core.recording.display import DisplaySource
from eegvlm_desktop.core.recording.recording import Recording
from eegvlm_desktop.gui.views.attention_overlay import AttentionOverlay
from eegvlm_desktop.gui.views.traces import TraceItem

#: Default lane height in display units per channel type (µV for electrophysiology): a
#: signal of +-scale/2 fills its lane. Chosen so typical N3 delta (~150 µV) stays readable.
DEFAULT_SCALES = {"eeg": 150.0, "eog": 300.0, "emg": 100.0, "ecg": 2000.0}
GAIN_STEP = 1.25
LANE_CLIP = 1.0  # traces are clipped at +- this many lane heights around their baseline
CURVE_PENS = {"eeg": "#1f2d5a", "eog": "#2b6e3f", "emg": "#7a3b14", "ecg": "#8a1c4a"}


class ClockAxis(pg.AxisItem):
    """Bottom axis showing clock time (HH:MM:SS) when the recording has a start time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.origin: datetime | None = None
        self.offset = 0.0  # seconds added to every tick value (page-relative x, see below)
        # Layout cache: paging keeps the range and size, so tick positions and label boxes
        # stay the same and only the label text changes. Regenerating the layout each page
        # cost ~4 ms (bench/viewer.py); relabelling the cached layout costs ~0.1 ms.
        self._layout_key: tuple | None = None
        self._layout = None
        self._value_of: dict[str, float] = {}

    def set_offset(self, offset: float) -> None:
        """Label ticks as ``offset + x``; forces the cached axis picture to be rebuilt."""
        if offset != self.offset:
            self.offset = float(offset)
            self.picture = None
            self.update()

    def _label(self, v: float, spacing: float = 1.0) -> str:
        v = v + self.offset
        if self.origin is None:
            if spacing < 1:
                return f"{int(v // 3600):d}:{int(v % 3600 // 60):02d}:{v % 60:04.1f}"
            return f"{int(v // 3600):d}:{int(v % 3600 // 60):02d}:{int(v % 60):02d}"
        return (self.origin + timedelta(seconds=float(v))).strftime("%H:%M:%S")

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt/pyqtgraph naming)
        strings = [self._label(v, spacing) for v in values]
        self._value_of.update(zip(strings, values))
        return strings

    def generateDrawSpecs(self, p):  # noqa: N802
        key = (tuple(self.range), self.width(), self.height(), self.origin is None)
        if key == self._layout_key and self._layout is not None:
            axis_spec, tick_specs, text_specs, value_of = self._layout
            if all(t in value_of for _, _, t in text_specs):
                return axis_spec, tick_specs, [(rect, flags, self._label(value_of[t]))
                                               for rect, flags, t in text_specs]
        self._value_of = {}
        specs = super().generateDrawSpecs(p)
        if specs is not None:
            self._layout_key, self._layout = key, (*specs, dict(self._value_of))
        return specs


class LaneViewBox(pg.ViewBox):
    """A view box that pans/zooms nothing: the wheel sets one lane's gain instead."""

    laneWheel = Signal(int, int)  # lane index, +1 (bigger) / -1 (smaller)
    clickedAt = Signal(float, int)  # time (s) and lane of a left click

    def __init__(self) -> None:
        super().__init__(enableMouse=False, enableMenu=False)

    def wheelEvent(self, ev, axis=None):  # noqa: N802
        lane = int(round(-self.mapSceneToView(ev.scenePos()).y()))
        self.laneWheel.emit(lane, 1 if ev.delta() > 0 else -1)
        ev.accept()

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            pos = self.mapSceneToView(ev.scenePos())
            self.clickedAt.emit(float(pos.x()), int(round(-pos.y())))
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

    A click also selects the channel under the pointer (its name gets a ▶ mark): the gain
    keys then act on that channel alone; Esc (or a click on it again) deselects.
    """

    clickedAt = Signal(float)

    def __init__(self, parent=None) -> None:
        self._axis = ClockAxis(orientation="bottom")
        self._vb = LaneViewBox()
        super().__init__(parent, viewBox=self._vb, axisItems={"bottom": self._axis})
        self.setBackground("w")
        self.setMenuEnabled(False)
        self.hideButtons()
        left = self.plotItem.getAxis("left")
        left.setWidth(110)
        # Axis text is the most expensive thing to paint; the channel names only change
        # with the channel order, so paint them from a cached pixmap.
        left.setCacheMode(left.CacheMode.DeviceCoordinateCache)
        self._vb.laneWheel.connect(self._on_lane_wheel)
        self._vb.clickedAt.connect(self._on_click)
        self.selected: int | None = None  # channel whose gain the keys change, or None
        self.recording: Recording | None = None
        self.source: DisplaySource | None = None
        self.order: list[int] = []  # visible channels, top to bottom
        self.scales: dict[int, float] = {}
        self._pens: dict[int, QPen] = {}
        self._traces = TraceItem()
        self.plotItem.addItem(self._traces)
        self._t0 = 0.0
        self._window = 30.0
        self._layout_done = False
        self._epoch_length = 30.0
        # Epoch boundaries and scale bars are single multi-segment items (connect="pairs"):
        # one item each instead of one per line keeps a page step cheap.
        self._grid = pg.PlotDataItem(pen=pg.mkPen("#888888", width=1.5), connect="pairs")
        self._bars = pg.PlotDataItem(pen=pg.mkPen("#c0392b", width=2), connect="pairs")
        # Second marks (5-s marks on long windows) as our own faint lines: the axis grid
        # (showGrid) paints translucent lines through the axis item and cost ~8 ms a page.
        self._minor = pg.PlotDataItem(pen=pg.mkPen("#e3e3e3", width=1), connect="pairs")
        self._minor.setZValue(-6)
        self.plotItem.addItem(self._minor)
        self._grid.setZValue(-5)
        self.plotItem.addItem(self._grid)
        self.plotItem.addItem(self._bars)
        self._bar_labels: list[pg.TextItem] = []
        self._current = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(255, 235, 150, 60),
                                            pen=pg.mkPen(None))
        self._current.setZValue(-10)
        self.plotItem.addItem(self._current)
        # The model's attention: behind traces and grid lines, above the current-epoch band.
        self._attention = AttentionOverlay()
        self._attention.setZValue(-8)
        self.plotItem.addItem(self._attention)

    # ----------------------------------------------------------------- set-up
    def set_recording(self, recording: Recording, source: DisplaySource,
                      epoch_length: float = 30.0) -> None:
        """Show ``recording``: all channels visible, default scales per channel type."""
        self.recording, self.source = recording, source
        self.selected = None
        # Attention computed on another recording would shade the wrong channels.
        self._attention.set_attention(0.0, 0.0, None)
        self._epoch_length = epoch_length
        self._axis.origin = (recording.meas_date.replace(tzinfo=None)
                             if recording.meas_date is not None else None)
        self.scales = {i: self._default_scale(i) for i in range(len(recording.ch_names))}
        self.set_order(list(range(len(recording.ch_names))))

    def _default_scale(self, ch: int) -> float:
        kind = self.recording.ch_types[ch]
        # Raw electrophysiology gets the conventional fixed scale. Channels with no natural
        # µV scale (temperature, respiration, markers) and low-rate envelopes (Sleep-EDF's
        # 1-Hz EMG is a rectified, smoothed envelope, not raw EMG) are scaled to their
        # spread over the first hour instead, or they would draw as a flat line.
        if kind in DEFAULT_SCALES and self.recording.orig_sfreqs[ch] >= 20:
            return DEFAULT_SCALES[kind]
        stop = min(self.recording.n_times, int(3600 * self.recording.sfreq))
        x = self.recording.get_data([ch], 0, stop)[0]
        spread = float(np.subtract(*np.percentile(x, [99, 1]))) if x.size else 0.0
        return spread if spread > 0 else DEFAULT_SCALES.get(kind, 1.0)

    def set_order(self, order: list[int]) -> None:
        """Show exactly the channels in ``order`` (top to bottom); others are hidden."""
        self.order = list(order)
        for ch in self.order:
            if ch not in self._pens:
                kind = self.recording.ch_types[ch]
                self._pens[ch] = pg.mkPen(CURVE_PENS.get(kind, "#333333"), width=1)
        if self.selected not in self.order:
            self.selected = None
        self._update_left_ticks()
        self.plotItem.setYRange(-len(self.order) + 0.5, 0.5, padding=0)
        self._rebuild_bar_labels()
        self._attention.set_order(self.order)
        self.refresh()

    # ----------------------------------------------------------------- selection
    def _on_click(self, x: float, lane: int) -> None:
        if 0 <= lane < len(self.order):
            ch = self.order[lane]
            self.select_channel(None if ch == self.selected else ch)
        self.clickedAt.emit(x + self._t0)

    def select_channel(self, ch: int | None) -> None:
        """Make the gain keys act on channel ``ch`` only (None: on all channels)."""
        self.selected = ch if ch in self.order else None
        self._update_left_ticks()

    def _update_left_ticks(self) -> None:
        names = self.recording.ch_names
        left = self.plotItem.getAxis("left")
        left.setTicks([[(-lane, ("▶ " if ch == self.selected else "") + names[ch])
                        for lane, ch in enumerate(self.order)], []])
        left.picture = None  # the cached axis picture must show the new selection
        left.update()

    # ----------------------------------------------------------------- gain
    def change_gain(self, factor: float, channels: list[int] | None = None) -> None:
        """Multiply the gain of ``channels`` by ``factor``.

        Default: the selected channel if there is one, else every visible channel.
        """
        if channels is None:
            channels = [self.selected] if self.selected is not None else self.order
        for ch in channels:
            self.scales[ch] = self.scales[ch] / factor
        self.refresh()

    def _on_lane_wheel(self, lane: int, direction: int) -> None:
        if 0 <= lane < len(self.order):
            self.change_gain(GAIN_STEP if direction > 0 else 1 / GAIN_STEP, [self.order[lane]])

    # ----------------------------------------------------------------- drawing
    # The x axis is page-relative (0 .. window) and the clock axis adds the page start to
    # its labels. Paging then changes only the curves' data and the axis text: the view
    # range, grid lines and scale bars stay put, which keeps a page step cheap.
    def show_window(self, t0: float, window: float, current: tuple[float, float]) -> None:
        """Show ``window`` seconds from ``t0``; ``current`` (start, stop) is highlighted."""
        new_window = float(window) != self._window or not self._layout_done
        self._t0, self._window = float(t0), float(window)
        self._current.setRegion((current[0] - self._t0, current[1] - self._t0))
        self._current.setVisible(window > (current[1] - current[0]) + 1e-6)
        self._axis.set_offset(self._t0)
        self._attention.set_page(self._t0, self._window)  # a setPos, not a redraw
        if new_window:
            self._layout_done = True
            self.plotItem.setXRange(0, self._window, padding=0)
            self._draw_grid()
            self._draw_scale_bars()
        self.refresh(decorations=False)

    def refresh(self, decorations: bool = True) -> None:
        """Redraw the visible page from the (cached) display data."""
        if self.recording is None or not self.order:
            return
        t0, t1 = self._t0, min(self._t0 + self._window, self.recording.duration)
        times, data = self.source.get(self.order, t0, t1)
        x, data = peak_decimate(times - t0, data, max(1, int(self._vb.width())))
        for lane, ch in enumerate(self.order):
            y = data[lane]
            if self.source.get_filter(ch).highpass is None and y.size:
                # Unfiltered channels (EMG envelope, temperature) carry a DC level: centre
                # them on the page so they stay in their lane.
                y -= np.median(y)
            y /= self.scales[ch]
        # A trace may swing into its neighbours' lanes (slow waves often do) but not across
        # the whole page: clip at one lane either side, as paper-like PSG viewers do.
        np.clip(data, -LANE_CLIP, LANE_CLIP, out=data)
        n = len(self.order)
        self._traces.set_traces(x, data, [-lane for lane in range(n)],
                                [self._pens[ch] for ch in self.order],
                                QRectF(0, -n - 1.0, self._window, n + 2.0))
        if decorations:
            self._draw_grid()
            self._draw_scale_bars()

    def _draw_grid(self) -> None:
        # Pages start on epoch boundaries, so page-relative epoch lines sit at 0, 30, 60 ...
        top, bottom = 0.5, -len(self.order) + 0.5
        for item, step in ((self._grid, self._epoch_length),
                           (self._minor, 1.0 if self._window <= 60 else 5.0)):
            edges = np.arange(0.0, self._window + 1e-9, step)
            item.setData(np.repeat(edges, 2), np.tile([top, bottom], len(edges)))

    def _rebuild_bar_labels(self) -> None:
        for item in self._bar_labels:
            self.plotItem.removeItem(item)
        self._bar_labels = []
        for _ in self.order:
            # A white box keeps the amplitude readable over a busy trace.
            label = pg.TextItem(color="#c0392b", anchor=(1, 0.5),
                                fill=pg.mkBrush(255, 255, 255, 220))
            self.plotItem.addItem(label)
            self._bar_labels.append(label)

    def _draw_scale_bars(self) -> None:
        """A vertical bar of half a lane per channel with its amplitude in display units."""
        x = self._window * 0.996
        xs, ys = [], []
        for lane, ch in enumerate(self.order):
            xs += [x, x]
            ys += [-lane - 0.25, -lane + 0.25]
            unit = self.recording.units[ch] or "units"
            self._bar_labels[lane].setText(f"{_fmt(self.scales[ch] / 2)} {unit}")
            self._bar_labels[lane].setPos(x - self._window * 0.003, -lane)
        self._bars.setData(np.array(xs), np.array(ys))

    # ----------------------------------------------------------------- attention
    def set_attention(self, epoch_start_s: float, epoch_length_s: float,
                      lanes: dict[int, np.ndarray] | None, opacity: float = 0.4) -> None:
        """Shade the model's attention behind the lanes of one epoch; None clears it.

        Parameters
        ----------
        epoch_start_s, epoch_length_s : float
            Span (s from the recording start) the attention columns spread over: the epoch,
            or the whole rendered window when the model saw context epochs (see
            :func:`~eegvlm_desktop.core.staging.attention_map.window_span`).
        lanes : dict or None
            ``{channel index: ndarray (n_columns,)}`` of values in [0, 1], e.g.
            ``attention_to_lanes(att_map, roles)``. Channels hidden in the view are skipped.
        opacity : float
            Alpha (0..1) of a cell of attention 1.
        """
        self._attention.set_attention(epoch_start_s, epoch_length_s, lanes, opacity)

    def set_attention_visible(self, visible: bool) -> None:
        """Show or hide the attention shading (it is kept while hidden)."""
        self._attention.set_shown(visible)

    def attention_rects(self) -> list[tuple[QRectF, float]]:
        """Shaded cells on the current page as (page-relative rect, alpha); [] if none."""
        return self._attention.page_cells()

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        if "_t0" in self.__dict__:  # pyqtgraph calls this from inside __init__
            self.refresh(decorations=False)  # the number of pixel columns changed


def peak_decimate(x: np.ndarray, data: np.ndarray, n_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max ("peak") decimation of all channels at once to ~2 points per pixel column.

    Same idea as pyqtgraph's ``setDownsampling(method="peak")``, done here because that
    path ran per curve with bounds checks and cost ~6 ms per page for 10 channels
    (measured with bench/viewer.py); one vectorised pass costs well under 1 ms.
    Spikes survive because every bin keeps both its minimum and its maximum.
    """
    n = x.size
    ds = n // max(n_px, 1)
    if ds < 2:
        return x, data
    nb = n // ds
    end = nb * ds
    out = np.empty((data.shape[0], nb, 2))
    lo, hi = out[:, :, 0], out[:, :, 1]
    # Min/max over each bin as ds strided passes (element-wise minimum/maximum of whole
    # columns): numpy's reduction along a short last axis (ds ~ 5) costs ~1.1 ms a page for
    # 10 channels, these passes ~0.1 ms (issue 18: page step <= 10 ms).
    lo[...] = data[:, 0:end:ds]
    hi[...] = lo
    for j in range(1, ds):
        column = data[:, j:end:ds]
        np.minimum(lo, column, out=lo)
        np.maximum(hi, column, out=hi)
    xb = x[: end : ds]
    xs = np.repeat(xb, 2)
    xs[1::2] += (x[1] - x[0]) * (ds - 1)  # the max sits at the end of its bin
    return xs, out.reshape(data.shape[0], nb * 2)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v < 10 else f"{v:.0f}"
