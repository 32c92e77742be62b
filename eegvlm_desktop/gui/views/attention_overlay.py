"""Translucent shading of the model's attention behind the signal view's lanes.

One graphics item holds every cell (lane x grid column) of one window's attention in a single
QPicture, drawn in *recording* time. The signal view's x axis is page-relative, so paging
moves the item with ``setPos(-page_start, 0)`` instead of rebuilding it: a page step costs one
``setPos``, and the picture is rebuilt only when the attention or the channel order changes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPicture

#: Warm shading: reads as "highlight" on the white background and stays distinct from the
#: navy/green/brown traces and from the pale-yellow current-epoch band.
ATTENTION_RGB = (230, 85, 13)
#: Alpha is quantised to this many levels so cells of equal level share one drawRects call.
_LEVELS = 64
#: Fraction of a lane left unshaded above and below, so neighbouring lanes stay apart.
_LANE_GAP = 0.04


class AttentionOverlay(pg.GraphicsObject):
    """Attention cells of one window, drawn behind the lanes of a stacked-channel view.

    Lane ``k`` is centred on ``y = -k`` as in :class:`~.signal_view.SignalView`. The item
    keeps the attention per *channel*, so a new channel order only re-lays the same cells.
    """

    def __init__(self, rgb: tuple[int, int, int] = ATTENTION_RGB) -> None:
        super().__init__()
        self._rgb = rgb
        self._picture = QPicture()
        self._rect = QRectF()
        self._cells: list[tuple[QRectF, float]] = []
        self._att: tuple[float, float, dict[int, np.ndarray], float] | None = None
        self._order: list[int] = []
        self._shown = True
        self._page = (0.0, 0.0)
        self.setVisible(False)

    # ----------------------------------------------------------------- state
    def set_attention(self, start: float, length: float,
                      lanes: dict[int, np.ndarray] | None, opacity: float = 0.4) -> None:
        """Replace the attention (``None`` clears it); see ``SignalView.set_attention``."""
        if lanes is None:
            self._att = None
        else:
            if not (np.isfinite(start) and np.isfinite(length) and length > 0):
                raise ValueError(f"Invalid attention span: start {start!r} s, length "
                                 f"{length!r} s (the length must be > 0).")
            if not 0.0 <= opacity <= 1.0:
                raise ValueError(f"Invalid value for the 'opacity' parameter: it must be in "
                                 f"0..1, but got {opacity!r} instead.")
            self._att = (float(start), float(length),
                         {int(ch): np.asarray(v, dtype=float) for ch, v in lanes.items()},
                         float(opacity))
        self._rebuild()

    def set_order(self, order: Sequence[int]) -> None:
        """Channels shown, top to bottom; channels not in ``order`` get no shading."""
        self._order = list(order)
        self._rebuild()

    def set_page(self, t0: float, window: float) -> None:
        """The page on screen starts at ``t0`` (s) and lasts ``window`` s: cheap, no rebuild."""
        self._page = (float(t0), float(window))
        self._place()

    def set_shown(self, shown: bool) -> None:
        """Show or hide the shading without forgetting it."""
        self._shown = bool(shown)
        self._place()

    @property
    def has_attention(self) -> bool:
        return self._att is not None

    def cells(self) -> list[tuple[QRectF, float]]:
        """Drawn cells as (rect in recording time, alpha 0..1), for tests and tooltips."""
        return list(self._cells)

    def page_cells(self) -> list[tuple[QRectF, float]]:
        """Cells as they sit on the current page (page-relative x); empty when not drawn."""
        if not self.isVisible():
            return []
        dx = self.pos().x()
        return [(r.translated(dx, 0.0), a) for r, a in self._cells]

    # ----------------------------------------------------------------- drawing
    def _rebuild(self) -> None:
        cells: list[tuple[QRectF, float]] = []
        by_level: dict[int, list[QRectF]] = {}
        rect = QRectF()
        if self._att is not None:
            start, length, lanes, opacity = self._att
            for lane, ch in enumerate(self._order):
                if ch not in lanes or lanes[ch].size == 0:
                    continue
                v = np.clip(lanes[ch], 0.0, 1.0)
                w = length / v.size
                levels = np.rint(v * opacity * _LEVELS).astype(int)
                for col in np.flatnonzero(levels > 0):  # transparent cells are not drawn
                    r = QRectF(start + col * w, -lane - 0.5 + _LANE_GAP, w, 1 - 2 * _LANE_GAP)
                    by_level.setdefault(int(levels[col]), []).append(r)
                    cells.append((r, float(v[col] * opacity)))
            if cells:
                n = len(self._order)
                rect = QRectF(start, -n + 0.5, length, n)
        pic = QPicture()
        p = QPainter(pic)
        p.setPen(Qt.PenStyle.NoPen)
        for level, rs in sorted(by_level.items()):
            p.setBrush(QColor(*self._rgb, int(round(255 * level / _LEVELS))))
            p.drawRects(rs)
        p.end()
        self.prepareGeometryChange()
        self._picture, self._cells, self._rect = pic, cells, rect
        self._place()
        self.update()

    def _place(self) -> None:
        # The view's x is page-relative: shift the recording-time picture by the page start.
        t0, window = self._page
        self.setPos(-t0, 0.0)
        on_page = False
        if self._att is not None and self._cells:
            start, length = self._att[0], self._att[1]
            on_page = start < t0 + window and start + length > t0
        self.setVisible(self._shown and on_page)

    def paint(self, painter, *args):  # noqa: D401 (Qt override)
        self._picture.play(painter)

    def boundingRect(self):  # noqa: N802
        return self._rect
