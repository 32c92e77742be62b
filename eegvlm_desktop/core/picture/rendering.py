"""Render a scoring epoch as THE model input image: stacked fixed-scale traces + a spectrogram.

One pure function, :func:`render_epoch`, turns per-role signals (µV at a fixed 100 Hz) into a
224 x 224 RGB uint8 image; every caller (training export, inference, the attention view) uses
it (a night through its batch form, :func:`render_epochs`, which draws each window to the
same bytes: :mod:`.raster`), so the model always sees exactly what it was trained on.
Rasterisation is plain numpy (min/max per pixel column, drawn as vertical spans, the "peak"
downsampling of EEG browsers):
no matplotlib, deterministic to the byte, and fast enough to render a night in seconds.

Layout (top to bottom): EEG frontal, EEG central, EEG occipital, EOG, chin EMG, then a
time-frequency strip of the central (else first available) EEG. See :func:`image_layout`.

Chin EMG is drawn as its *tone*, not as a trace: a filled level of the 1-s RMS envelope on a
logarithmic µV scale. Scorers read chin EMG as a level (high in wake, lowest in REM), labs
record it either raw (200-512 Hz) or as a ready-made envelope (Sleep-EDF's 1-Hz "EMG
submental", 0.1-4 µV), and both become the same kind of picture this way. Renderer 1 drew the
envelope as a trace at +-50 µV, which left it ~1 pixel high: the model never saw chin tone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np

from eegvlm_desktop.core.picture import raster
from eegvlm_desktop.core.recording.montage import EEG_ROLES, ROLES

#: Bump whenever a pixel of the output may change: cached images and trained models record it.
RENDERER_VERSION = "2"
#: Image side in pixels. 224 is the native input of CLIP ViT-B/16 and ViT-L/14 (the 336-px
#: LLaVA tower interpolates from it); rendering at the encoder's size avoids a resize that would
#: blur one-pixel traces, and 224 columns still give ~7.5 samples per column at 100 Hz / 30 s.
IMAGE_SIZE = 224
#: Rate every signal is resampled to, so 50/100/128/256 Hz recordings render alike.
RENDER_SFREQ = 100.0

#: Fixed half-range (µV) per band type: amplitude is information (N3 slow waves are > 75 µV
#: peak-to-peak), so traces are never auto-scaled; larger excursions clip at the band edge.
SCALES_UV: dict[str, float] = {"eeg": 100.0, "eog": 200.0, "emg": 30.0}
#: Chin EMG level scale (µV RMS, log10): the band's bottom row is EMG_LEVEL_UV[0], its top row
#: ``SCALES_UV["emg"]``. Two and a half decades cover REM atonia in an envelope channel
#: (~0.2 µV) up to tonic waking EMG in a raw one (~30 µV).
EMG_LEVEL_UV = (0.1, SCALES_UV["emg"])
#: Raw chin EMG is high-passed here (Hz) before its RMS: the muscle band, without drift/ECG.
EMG_HIGHPASS_HZ = 10.0
#: One colour per band type (RGB); a missing role is a mid-grey centre line.
COLORS: dict[str, tuple[int, int, int]] = {
    "eeg": (235, 235, 235), "eog": (90, 200, 255), "emg": (255, 140, 60)}
MISSING_COLOR = (128, 128, 128)
#: Time-frequency strip: frequency range (Hz) and fixed dB range (re 1 µV²/Hz).
TF_FREQS = (0.5, 30.0)
TF_DB = (-15.0, 25.0)

_BAND_HEIGHT = 36  # 5 x 36 = 180 rows of traces ...
_TF_HEIGHT = IMAGE_SIZE - len(ROLES) * _BAND_HEIGHT  # ... and 44 rows of spectrogram
#: Windows drawn together by render_night: the per-call overhead is gone by ~30, and the
#: working arrays stay a few MB.
_DRAW_BATCH = 32
_PAD_S = 1.0  # resampling reads 1 s beyond the window so its filter has no edge effect


@dataclass(frozen=True)
class Band:
    """One horizontal band of the image: rows ``top`` .. ``top + height - 1``."""

    name: str  # a role of montage.ROLES, or "tf" for the time-frequency strip
    kind: str  # "eeg", "eog", "emg" or "tf"
    top: int
    height: int
    scale_uv: float | None  # half-range in µV; the level scale's top for "emg"; None for "tf"


def image_layout() -> tuple[Band, ...]:
    """The image's bands, top to bottom, for mapping image patches back to time x channel.

    Column ``c`` of every band covers time ``[c, c + 1) * window / IMAGE_SIZE`` of the rendered
    window (one epoch plus context on each side). In the "tf" band, row 0 is ``TF_FREQS[1]``
    and the last row ``TF_FREQS[0]`` (linear in frequency).
    """
    bands = [Band(role, _kind(role), i * _BAND_HEIGHT, _BAND_HEIGHT, SCALES_UV[_kind(role)])
             for i, role in enumerate(ROLES)]
    bands.append(Band("tf", "tf", len(ROLES) * _BAND_HEIGHT, _TF_HEIGHT, None))
    return tuple(bands)


def _sps() -> Any:
    """scipy.signal, imported on first use: the viewer imports this module for its layout
    (IMAGE_SIZE, image_layout) and must not pay scipy.signal's ~0.6 s and ~75 MB at launch."""
    from scipy import signal

    return signal


def _kind(role: str) -> str:
    return "eeg" if role in EEG_ROLES else role


@dataclass
class EpochSignals:
    """Per-role signals of one window, the sole input of :func:`render_epoch`.

    ``signals[role]`` is a 1-D float array in µV at ``sfreq`` Hz (NaN where the window runs
    past the recording), or None when the recording has no channel for that role.
    """

    signals: dict[str, np.ndarray | None]
    sfreq: float = RENDER_SFREQ
    epoch_index: int = 0
    epoch_length: float = 30.0
    context: int = 0
    channel_names: dict[str, str | None] = field(default_factory=dict)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"Invalid value for the '{name}' parameter: it must be an integer "
                         f">= {low}, but got {value!r} instead.")
    return int(value)


def _ratio(sfreq: float) -> tuple[int, int]:
    """(up, down) for resample_poly from ``sfreq`` to RENDER_SFREQ (e.g. 256 Hz -> 25/64)."""
    frac = Fraction(RENDER_SFREQ / sfreq).limit_denominator(1000)
    return frac.numerator, frac.denominator


def read_resampled(recording: Any, picks: Sequence[int], start_s: float,
                   stop_s: float) -> np.ndarray:
    """Samples of ``picks`` over ``[start_s, stop_s)`` in µV, resampled to 100 Hz.

    Parts of the window outside the recording are NaN. The read extends 1 s each side before
    resampling, so one epoch read alone and the same epoch cut from a long chunk agree.

    Returns
    -------
    ndarray, float64, shape (len(picks), round((stop_s - start_s) * 100))
    """
    n_out = int(round((stop_s - start_s) * RENDER_SFREQ))
    out = np.full((len(picks), n_out), np.nan)
    if not picks or n_out <= 0:
        return out
    sf = float(recording.sfreq)
    pad = _PAD_S if not math.isclose(sf, RENDER_SFREQ) else 0.0
    s0 = max(0, int(round((start_s - pad) * sf)))
    s1 = min(recording.n_times, int(round((stop_s + pad) * sf)))
    if s1 <= s0:
        return out
    data = recording.get_data(list(picks), s0, s1)
    if pad:
        up, down = _ratio(sf)
        data = _sps().resample_poly(data, up, down, axis=1)
    # Place the resampled read on the output grid (sample k of the read is at s0/sf + k/100 s).
    offset = int(round((s0 / sf - start_s) * RENDER_SFREQ))
    lo, hi = max(0, offset), min(n_out, offset + data.shape[1])
    if hi > lo:
        out[:, lo:hi] = data[:, lo - offset:hi - offset]
    return out


def prepare_epoch(recording: Any, epoch_index: int, roles: dict[str, int | None],
                  epoch_length: float = 30.0, context: int = 0) -> EpochSignals:
    """Read one epoch (plus ``context`` epochs each side) as role -> µV at 100 Hz.

    Parameters
    ----------
    recording : Recording
        An opened recording (``sfreq``, ``n_times``, ``ch_names``, ``get_data``).
    epoch_index : int
        Epoch number (>= 0) on the grid of ``epoch_length``-second epochs from time 0.
    roles : dict
        Output of :func:`eegvlm_desktop.core.recording.montage.pick_roles`.
    epoch_length : float
        Seconds per epoch (> 0).
    context : int
        Neighbouring epochs on each side to include (>= 0); off-recording parts are NaN.
    """
    _check_int("epoch_index", epoch_index, 0)
    _check_int("context", context, 0)
    if not (isinstance(epoch_length, (int, float)) and epoch_length > 0):
        raise ValueError("Invalid value for the 'epoch_length' parameter: it must be a positive "
                         f"number of seconds, but got {epoch_length!r} instead.")
    return _cut(recording, roles, [epoch_index], epoch_length, context)[0]


def _cut(recording: Any, roles: dict[str, int | None], indices: Sequence[int],
         epoch_length: float, context: int) -> list[EpochSignals]:
    """EpochSignals for ``indices`` (sorted, close together) from one read of their span."""
    picks = sorted({i for i in roles.values() if i is not None})
    t0 = (min(indices) - context) * epoch_length
    t1 = (max(indices) + 1 + context) * epoch_length
    data = read_resampled(recording, picks, t0, t1)
    row = {ch: k for k, ch in enumerate(picks)}
    n_win = int(round((2 * context + 1) * epoch_length * RENDER_SFREQ))
    names = {r: (recording.ch_names[i] if i is not None else None) for r, i in roles.items()}
    out = []
    for ep in indices:
        a = int(round((ep - context) * epoch_length * RENDER_SFREQ - t0 * RENDER_SFREQ))
        sig = {r: (None if roles.get(r) is None else data[row[roles[r]], a:a + n_win].copy())
               for r in ROLES}
        out.append(EpochSignals(sig, RENDER_SFREQ, ep, float(epoch_length), context, names))
    return out


def _colour_lut() -> np.ndarray:
    """256-entry RGB colour map (dark blue -> teal -> yellow), built once, deterministic."""
    anchors = np.array([[10, 10, 40], [30, 60, 140], [20, 160, 150], [250, 230, 60]], float)
    x = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], 1).round().astype(np.uint8)


_LUT = _colour_lut()


def _draw_trace(imgs: np.ndarray, band: Band, x: np.ndarray | None) -> None:
    """A fixed-scale trace per image: min..max of each pixel column, offset removed."""
    h, w = band.height, imgs.shape[2]
    view = imgs[:, band.top:band.top + h]
    mid = (h - 1) / 2.0
    if x is None:
        view[:, int(mid)] = MISSING_COLOR
        return
    lo, hi, valid = raster.column_extrema(raster.centre(np.asarray(x, dtype=np.float64)), w)
    px_per_uv = mid / float(band.scale_uv)  # +scale -> row 0, -scale -> row h-1
    with np.errstate(invalid="ignore"):  # inf/NaN in invalid columns, masked out below
        top = np.clip(np.floor(mid - hi * px_per_uv + 0.5), 0, h - 1)
        bot = np.clip(np.floor(mid - lo * px_per_uv + 0.5), 0, h - 1)
    raster.draw_spans(view, top, bot, valid, COLORS[band.kind])


def emg_envelope(x: np.ndarray, sfreq: float) -> np.ndarray:
    """The chin EMG tone of ``x`` (µV): the 1-s RMS of the muscle band, NaN where ``x`` is NaN.

    A signal that is already an envelope (>= 99 % of its samples non-negative and almost no
    power above :data:`EMG_HIGHPASS_HZ`, like Sleep-EDF's 1-Hz "EMG submental") is returned as
    it is; a raw EMG is high-passed at :data:`EMG_HIGHPASS_HZ` and its RMS taken over 1-s
    windows centred on each sample.
    """
    x = np.asarray(x, dtype=np.float64)
    return raster.emg_envelopes(x[None], sfreq, EMG_HIGHPASS_HZ)[0]


def _draw_level(imgs: np.ndarray, band: Band, x: np.ndarray | None, sfreq: float) -> None:
    """Chin EMG as a filled level per column (log µV scale, bottom = EMG_LEVEL_UV[0])."""
    h, w = band.height, imgs.shape[2]
    view = imgs[:, band.top:band.top + h]
    if x is None:
        view[:, (h - 1) // 2] = MISSING_COLOR
        return
    env = raster.emg_envelopes(np.asarray(x, dtype=np.float64), sfreq, EMG_HIGHPASS_HZ)
    level, valid = raster.column_means(env, w)
    lo, hi = np.log10(EMG_LEVEL_UV[0]), np.log10(EMG_LEVEL_UV[1])
    frac = np.clip((np.log10(np.maximum(level, 1e-12)) - lo) / (hi - lo), 0.0, 1.0)
    # At least the bottom row is lit in a valid column, so "no tone" differs from "no data".
    top = np.clip(np.floor((h - 1) * (1.0 - frac) + 0.5), 0, h - 1)
    raster.draw_spans(view, top, np.full_like(top, h - 1), valid, COLORS["emg"])


def _draw_tf(imgs: np.ndarray, band: Band, x: np.ndarray | None, sfreq: float) -> None:
    view = imgs[:, band.top:band.top + band.height]
    if x is None:
        view[:, band.height // 2] = MISSING_COLOR
        return
    # Row r (0 = top) shows the frequency bin nearest to its centre frequency, high at the top.
    row_f = TF_FREQS[1] - (np.arange(band.height) + 0.5) * (np.diff(TF_FREQS)[0] / band.height)
    db = raster.power_db(x, sfreq, row_f, imgs.shape[2])
    level = np.clip((db - TF_DB[0]) / (TF_DB[1] - TF_DB[0]), 0.0, 1.0)
    view[:] = _LUT[(level * 255 + 0.5).astype(np.intp)]


def _check_signals(signals: EpochSignals) -> None:
    unknown = sorted(set(signals.signals) - set(ROLES))
    if unknown:
        raise ValueError(f"Invalid value for the 'signals' parameter: roles must be among "
                         f"{ROLES}, but got {unknown} instead.")
    if not signals.sfreq > 0:
        raise ValueError("Invalid value for the 'sfreq' parameter: it must be > 0 Hz, but got "
                         f"{signals.sfreq!r} instead.")


def _shape_key(signals: EpochSignals) -> tuple:
    """Windows with the same key are drawn together (same rate, roles, lengths and dtypes)."""
    return (float(signals.sfreq),) + tuple(
        None if signals.signals.get(r) is None else
        (np.shape(signals.signals[r]), np.asarray(signals.signals[r]).dtype.str) for r in ROLES)


def render_epoch(signals: EpochSignals) -> np.ndarray:
    """Render one window as the model's input image.

    Parameters
    ----------
    signals : EpochSignals
        Per-role µV signals at ``signals.sfreq`` (normally from :func:`prepare_epoch`).

    Returns
    -------
    ndarray, uint8, shape (IMAGE_SIZE, IMAGE_SIZE, 3)
        Deterministic: the same signals always give the same bytes, alone or in a batch
        (:func:`render_epochs`).
    """
    return render_epochs([signals])[0]


def render_epochs(batch: Sequence[EpochSignals]) -> np.ndarray:
    """Render several windows: row ``i`` is ``render_epoch(batch[i])``, byte for byte.

    Windows of the same rate, roles and lengths (all of a night's) are drawn together, a
    band at a time (:mod:`.raster`); that is what makes a night fast to render.

    Returns
    -------
    ndarray, uint8, shape (len(batch), IMAGE_SIZE, IMAGE_SIZE, 3)
    """
    for signals in batch:
        _check_signals(signals)
    out = np.zeros((len(batch), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    groups: dict[tuple, list[int]] = {}
    for i, signals in enumerate(batch):
        groups.setdefault(_shape_key(signals), []).append(i)
    bands = image_layout()
    for key, idx in groups.items():
        sfreq, present = key[0], dict(zip(ROLES, key[1:]))
        # Stacked as given: traces and the EMG level work in float64, the spectrogram in the
        # signal's own precision, as the one-window renderer did.
        stacked = {r: None if present[r] is None else np.stack(
            [np.asarray(batch[i].signals[r]) for i in idx]) for r in ROLES}
        imgs = out[idx]
        for band in bands[:-1]:
            if band.kind == "emg":
                _draw_level(imgs, band, stacked[band.name], sfreq)
            else:
                _draw_trace(imgs, band, stacked[band.name])
        tf_src = next((stacked[r] for r in ("eeg_central",) + EEG_ROLES
                       if stacked[r] is not None), None)
        _draw_tf(imgs, bands[-1], tf_src, sfreq)
        out[idx] = imgs
    return out


def render_night(recording: Any, roles: dict[str, int | None],
                 epoch_indices: Sequence[int] | None = None, *, epoch_length: float = 30.0,
                 context: int = 0, chunk_epochs: int = 120,
                 transform: Callable[[EpochSignals], EpochSignals] | None = None
                 ) -> np.ndarray:
    """Render many epochs, reading the recording in chunks of ``chunk_epochs`` (not per epoch).

    Parameters
    ----------
    recording : Recording
    roles : dict
        Output of :func:`~eegvlm_desktop.core.recording.montage.pick_roles`.
    epoch_indices : sequence of int or None
        Epochs to render (any order); None for every complete epoch.
    epoch_length, context : see :func:`prepare_epoch`.
    chunk_epochs : int
        Epochs per read (>= 1); bounds memory on long high-rate recordings.
    transform : callable, optional
        Applied to each epoch's signals before rendering, in epoch order (training variants,
        :mod:`.augment`); None renders the recording as it is.

    Returns
    -------
    ndarray, uint8, shape (n, IMAGE_SIZE, IMAGE_SIZE, 3), in the order of ``epoch_indices``.
    """
    _check_int("context", context, 0)
    _check_int("chunk_epochs", chunk_epochs, 1)
    if epoch_indices is None:
        epoch_indices = range(int(recording.n_times / recording.sfreq / epoch_length + 1e-9))
    idx = [_check_int("epoch_indices", int(i) if isinstance(i, np.integer) else i, 0)
           for i in epoch_indices]
    out = np.empty((len(idx), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    order = np.argsort(idx, kind="stable")
    k = 0
    while k < len(order):
        # One chunk = consecutive sorted epochs spanning at most chunk_epochs epochs.
        first = idx[order[k]]
        j = k
        while j < len(order) and idx[order[j]] - first < chunk_epochs:
            j += 1
        chunk = [idx[o] for o in order[k:j]]
        sigs = _cut(recording, roles, chunk, epoch_length, context)
        if transform is not None:  # in epoch order: a seeded transform draws the same way
            sigs = [transform(sig) for sig in sigs]
        for b in range(0, len(sigs), _DRAW_BATCH):
            out[order[k:j][b:b + _DRAW_BATCH]] = render_epochs(sigs[b:b + _DRAW_BATCH])
        k = j
    return out
