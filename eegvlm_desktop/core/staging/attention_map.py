"""Map the model's patch-grid attention back onto the recording's channels and time.

The model sees one 224 x 224 image per window (:mod:`.rendering`): five trace bands, one per
montage role, then a time-frequency strip. Its attention comes as a ``(grid, grid)`` map over
square image patches whose rows do not line up with the bands (a 16-px patch row may straddle
two 36-px bands). This module turns such a map into one vector over the grid's time columns
per *channel*, which the signal view shades behind each lane. Pure numpy, no Qt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eegvlm_desktop.core.picture.rendering import IMAGE_SIZE, image_layout
from eegvlm_desktop.core.recording.montage import EEG_ROLES, ROLES

#: Name of the time-frequency band in :func:`~.rendering.image_layout`.
TF_BAND = "tf"


@dataclass(frozen=True)
class ChannelAttention:
    """Attention of one window per channel, scaled to [0, 1] (above-mean part) over the map.

    Attributes
    ----------
    lanes : dict
        ``{channel index: ndarray (grid,)}``: attention per grid column (time, left to right)
        for every channel that fills at least one trace band.
    tf : ndarray (grid,) or None
        Attention on the time-frequency strip, None when no EEG role is filled (the strip
        is then blank in the image and its attention means nothing).
    tf_channel : int or None
        The channel the strip was computed from (see :func:`tf_channel`).
    """

    lanes: dict[int, np.ndarray]
    tf: np.ndarray | None
    tf_channel: int | None

    def merged(self) -> dict[int, np.ndarray]:
        """``lanes`` with the strip's attention folded into its channel (element-wise max).

        The strip is a picture of that channel's spectrum, so attention there is attention
        to the channel: use this when the view has no separate row for the strip.
        """
        out = {ch: v.copy() for ch, v in self.lanes.items()}
        if self.tf is not None and self.tf_channel is not None:
            prev = out.get(self.tf_channel)
            out[self.tf_channel] = self.tf.copy() if prev is None else np.maximum(prev, self.tf)
        return out


def band_row_weights(grid: int) -> dict[str, np.ndarray]:
    """Per image band, the weight of each patch row: its pixel overlap with the band.

    Parameters
    ----------
    grid : int
        Patches per image side (224 / patch size: 14 for 16-px patches, 7 for 32-px).

    Returns
    -------
    dict
        ``{band name: ndarray (grid,)}`` in image order (the roles, then ``"tf"``); each
        vector sums to 1, so ``weights @ att_map`` is the band's mean attention per column.
    """
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f"Invalid value for the 'grid' parameter: it must be a positive "
                         f"integer, but got {grid!r} instead.")
    edges = np.arange(grid + 1) * (IMAGE_SIZE / grid)  # pixel rows of patch row r: [e_r, e_r+1)
    out: dict[str, np.ndarray] = {}
    for band in image_layout():
        lo, hi = band.top, band.top + band.height
        overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
        out[band.name] = overlap / overlap.sum()
    return out


def tf_channel(roles: dict[str, int | None]) -> int | None:
    """The channel drawn in the time-frequency strip: central EEG, else the first EEG role.

    Mirrors the choice made by :func:`~.rendering.render_epoch`.
    """
    for role in ("eeg_central",) + EEG_ROLES:
        if roles.get(role) is not None:
            return roles[role]
    return None


def attention_to_lanes(att_map: np.ndarray,
                       roles: dict[str, int | None]) -> dict[int, np.ndarray]:
    """Attention per channel over time from the trace bands: ``{channel: ndarray (grid,)}``.

    The lanes of :func:`channel_attention`, ready for ``SignalView.set_attention``; the
    time-frequency strip is left out (``channel_attention(...).merged()`` folds it in).
    """
    return channel_attention(att_map, roles).lanes


def channel_attention(att_map: np.ndarray, roles: dict[str, int | None]) -> ChannelAttention:
    """Attention per channel over time, from one window's patch-grid attention map.

    Parameters
    ----------
    att_map : ndarray (grid, grid)
        Attention over image patches, row 0 at the top of the image. Column ``c`` covers
        time ``[c, c + 1) * window / grid`` of the rendered window: with the default
        ``context=0`` that window is exactly the scored epoch.
    roles : dict
        Role -> channel index (or None), as from :func:`~.montage.pick_roles`.

    Returns
    -------
    ChannelAttention
        Each band's attention is the overlap-weighted mean of the patch rows it covers
        (:func:`band_row_weights`). A channel that fills several roles (a single C3-A1
        recording fills all three EEG bands) gets the **maximum** over its bands: the model
        looking hard at any one copy of a trace is looking at that channel, and a mean would
        dilute it with the copies it ignored. Every vector, strip included, is scaled with
        one scale over all six bands, so lanes compare with each other: 0 at or below the
        mean band attention, 1 at the maximum; a map constant everywhere gives zeros.
    """
    att = np.asarray(att_map, dtype=np.float64)
    if att.ndim != 2 or att.shape[0] != att.shape[1] or att.shape[0] < 1:
        raise ValueError(f"Invalid value for the 'att_map' parameter: it must be a square "
                         f"(grid, grid) array, but got shape {att.shape} instead.")
    if not np.isfinite(att).all():
        raise ValueError("Invalid value for the 'att_map' parameter: it contains NaN or "
                         "infinite values.")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"Invalid value for the 'roles' parameter: keys must be among {ROLES}, "
                         f"but got {unknown} instead.")
    weights = band_row_weights(att.shape[0])
    per_band = {name: w @ att for name, w in weights.items()}
    # One scale for the whole image: normalising each band alone would make a band the
    # model barely looked at shine as brightly as the one it studied.
    stacked = np.stack(list(per_band.values()))
    # Above-average attention only: the answer's map is often nearly flat, and a min-max
    # stretch painted every lane; now a cell is shaded by how far it rises above the
    # image's mean towards its maximum, and cells at or below the mean stay clear.
    lo, hi = float(stacked.mean()), float(stacked.max())
    span = hi - lo
    norm = {name: (np.clip((v - lo) / span, 0.0, 1.0) if span > 0 else np.zeros_like(v))
            for name, v in per_band.items()}
    lanes: dict[int, np.ndarray] = {}
    for role in ROLES:
        ch = roles.get(role)
        if ch is None:
            continue
        ch = int(ch)
        lanes[ch] = norm[role] if ch not in lanes else np.maximum(lanes[ch], norm[role])
    tf_ch = tf_channel(roles)
    tf = norm[TF_BAND] if tf_ch is not None else None
    return ChannelAttention(lanes, tf, None if tf_ch is None else int(tf_ch))


def window_span(epoch_index: int, epoch_length: float = 30.0,
                context: int = 0) -> tuple[float, float]:
    """Start and length (s) of the window an epoch's image was rendered from.

    The attention map's columns spread over this span, not over the scored epoch alone when
    ``context > 0``: pass it to the signal view's ``set_attention``.
    """
    return (epoch_index - context) * float(epoch_length), (2 * context + 1) * float(epoch_length)
