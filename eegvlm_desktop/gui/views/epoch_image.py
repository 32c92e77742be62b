"""The model's input image as the scorer sees it: scaled up crisply, band labels in the margin,
and the attention heat map on top (one colour map, normalised per map for display).

Split out of :mod:`.epoch_panel`; plain drawing, no model code.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from eegvlm_desktop.core.picture.rendering import IMAGE_SIZE, image_layout

#: Short band names for the image's left margin (roles of core.montage.ROLES, then "tf").
BAND_LABELS = {"eeg_frontal": "F", "eeg_central": "C", "eeg_occipital": "O", "eog": "EOG",
               "emg": "EMG", "tf": "Hz"}


def _heat_lut() -> np.ndarray:
    """256 RGBA entries: transparent violet -> magenta -> orange -> pale yellow.

    The model image is light traces and a blue/teal/yellow spectrogram on black; warm
    magenta-orange stays distinct from all of them. Alpha grows with attention so the traces
    under weakly attended patches stay fully readable.
    """
    anchors = np.array([[90, 20, 160], [200, 30, 160], [250, 110, 40], [255, 235, 120]], float)
    t = np.linspace(0, 1, 256)
    x = np.linspace(0, 1, len(anchors))
    rgb = np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], 1)
    alpha = 255 * np.clip(t * 1.25, 0, 1) ** 2
    return np.column_stack([rgb, alpha]).round().astype(np.uint8)


HEAT_LUT = _heat_lut()


def display_map(att_map: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A patch-grid attention map as a ``(size, size)`` image in [0, 1] for display.

    Bilinear between patch centres (a patch's value sits at its centre), then normalised to
    its own min..max: attention weights are tiny and differ between maps, so only the
    relative pattern of one map is meaningful to show. A flat map shows as zeros.
    """
    m = np.asarray(att_map, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"The 'att_map' parameter must be a square 2-D grid, but got shape "
                         f"{m.shape}.")
    g = m.shape[0]
    centres = (np.arange(g) + 0.5) * size / g
    px = np.arange(size) + 0.5
    # Linear interpolation is separable: one (size, g) weight matrix per axis.
    w = np.stack([np.interp(px, centres, e) for e in np.eye(g)], 1)
    up = w @ np.nan_to_num(m) @ w.T
    lo, hi = up.min(), up.max()
    return (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)


class EpochImageView(QWidget):
    """The 224x224 model image, scaled up crisply, with the heat map and band labels."""

    GUTTER = 34

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.heat: QImage | None = None
        self._cache: dict[str, tuple[int, QImage]] = {}  # name -> (side, scaled image)
        self.opacity = 0.6
        self.overlay = True
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setMinimumSize(IMAGE_SIZE + self.GUTTER, IMAGE_SIZE)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt naming)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return max(IMAGE_SIZE, width - self.GUTTER)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(2 * IMAGE_SIZE + self.GUTTER, 2 * IMAGE_SIZE)

    def target(self) -> QRect:
        side = max(1, min(self.width() - self.GUTTER, self.height()))
        return QRect(self.GUTTER, 0, side, side)

    def set_images(self, **images: QImage | None) -> None:
        """Replace ``image`` and/or ``heat``; their scaled copies are rebuilt on paint."""
        for name, img in images.items():
            setattr(self, name, img)
            self._cache.pop(name, None)
        self.update()

    def _scaled_cached(self, name: str, side: int) -> QImage:
        # Painting happens on every slider step: scale once per image and size, not per paint.
        hit = self._cache.get(name)
        if hit is None or hit[0] != side:
            hit = self._cache[name] = (side, self._scaled(getattr(self, name), side))
        return hit[1]

    @staticmethod
    def _scaled(img: QImage, side: int) -> QImage:
        # Nearest-neighbour up to the next integer multiple keeps one-pixel traces sharp and
        # even; a smooth step down to the exact size then avoids uneven 1-/2-px columns.
        k = max(1, -(-side // img.width()))
        big = img.scaled(img.width() * k, img.height() * k,
                         Qt.AspectRatioMode.IgnoreAspectRatio,
                         Qt.TransformationMode.FastTransformation)
        if big.width() == side:
            return big
        return big.scaled(side, side, Qt.AspectRatioMode.IgnoreAspectRatio,
                          Qt.TransformationMode.SmoothTransformation)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        rect = self.target()
        p.fillRect(rect, QColor("#111111"))
        if self.image is None:
            p.setPen(QColor("#bbbbbb"))
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, "no image")
            p.end()
            return  # no band labels either: they would label nothing
        p.drawImage(rect.topLeft(), self._scaled_cached("image", rect.width()))
        if self.overlay and self.heat is not None and self.opacity > 0:
            p.setOpacity(self.opacity)
            p.drawImage(rect.topLeft(), self._scaled_cached("heat", rect.width()))
            p.setOpacity(1.0)
        p.setPen(self.palette().windowText().color())
        scale = rect.height() / IMAGE_SIZE
        for band in image_layout():
            box = QRectF(0, band.top * scale, self.GUTTER - 4, band.height * scale)
            p.drawText(box, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       BAND_LABELS.get(band.name, band.name))
        p.end()
