"""The renderer's drawing steps, on a batch of windows at once (the rows of 2-D arrays).

:func:`~eegvlm_desktop.core.picture.rendering.render_epoch` is one window, and a night is
hundreds: drawn one by one, ~20 small numpy calls per band and window cost more than the
arithmetic. Every step here takes ``(B, n)`` signals and draws into ``(B, S, S, 3)`` images
with the same operations, in the same order, per row as the one-window code did, so a
window's bytes do not depend on the batch it was drawn in
(``tests/core/picture/test_rendering.py`` checks this, and the example night's bytes
against the renderer's recorded checksum).
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np


def _sps() -> Any:
    """scipy.signal, imported on first use (~0.6 s and ~75 MB that the viewer never needs)."""
    from scipy import signal

    return signal


def column_extrema(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row and pixel column: min, max (joined to the previous column's last sample), and
    whether the column holds a finite sample. ``x`` is ``(B, n)``; outputs ``(B, width)``."""
    if x.shape[1] < width:  # short windows: interpolate so every column holds a sample
        grid, at = np.linspace(0, x.shape[1] - 1, width), np.arange(x.shape[1])
        x = np.stack([np.interp(grid, at, row) for row in x])
    n = x.shape[1]
    starts = (np.arange(width) * n) // width
    finite = np.isfinite(x)
    valid = np.add.reduceat(finite.astype(np.int32), starts, axis=1) > 0
    lo = np.minimum.reduceat(np.where(finite, x, np.inf), starts, axis=1)
    hi = np.maximum.reduceat(np.where(finite, x, -np.inf), starts, axis=1)
    # Joining each column to the last sample of the previous one keeps a steep trace connected.
    ends = np.r_[starts[1:], n] - 1
    last = x[:, ends]
    prev = np.concatenate([np.full((len(x), 1), np.nan), last[:, :-1]], axis=1)
    ok = np.isfinite(prev) & valid
    lo[ok] = np.minimum(lo[ok], prev[ok])
    hi[ok] = np.maximum(hi[ok], prev[ok])
    return lo, hi, valid


def centre(x: np.ndarray) -> np.ndarray:
    """Each row minus the median of its finite samples (electrode offset, slow drift)."""
    finite = np.isfinite(x)
    if finite.all():
        return x - np.median(x, axis=1, keepdims=True)
    out = x.copy()
    for row in range(len(x)):
        fin = x[row][finite[row]]
        if fin.size:
            out[row] = x[row] - np.median(fin)
    return out


def draw_spans(view: np.ndarray, top: np.ndarray, bot: np.ndarray, valid: np.ndarray,
               colour: tuple[int, int, int]) -> None:
    """Fill rows ``top..bot`` of every valid column of ``view`` ``(B, h, w, 3)``."""
    rows = np.arange(view.shape[1])[None, :, None]
    view[(rows >= top[:, None, :]) & (rows <= bot[:, None, :]) & valid[:, None, :]] = colour


@functools.lru_cache(maxsize=8)
def _emg_highpass(sfreq: float, cutoff: float) -> np.ndarray:
    """The EMG high-pass as second-order sections, designed once per rate: designing it for
    every window was a quarter of a night's rendering time (0.5 of 2.2 s for 852 epochs)."""
    sos = _sps().butter(4, cutoff, "highpass", fs=sfreq, output="sos")
    sos.flags.writeable = False  # shared between calls: callers filter with a copy
    return sos


def emg_envelopes(x: np.ndarray, sfreq: float, cutoff: float) -> np.ndarray:
    """Rows of :func:`~eegvlm_desktop.core.picture.rendering.emg_envelope`, one per row of
    ``x`` ``(B, n)``; the high-pass runs on all rows at once (it filters each row alone)."""
    finite = np.isfinite(x)
    out = x.copy()
    rows = np.flatnonzero(finite.any(axis=1))
    if not rows.size:
        return out
    filled = np.where(finite, x, 0.0)
    n_win = max(1, int(round(sfreq)))
    if x.shape[1] > 27 and sfreq > 2 * cutoff:
        # The mean of the finite samples, per row, as the one-window code took it.
        means = np.array([filled[r][finite[r]].mean() for r in rows])[:, None]
        hp = np.zeros_like(filled)
        hp[rows] = _sps().sosfiltfilt(_emg_highpass(float(sfreq), cutoff).copy(),
                                      filled[rows] - means, axis=-1)
    else:  # too short or too slow to hold a muscle band: only an envelope makes sense
        hp = np.zeros_like(filled)
    for r in rows:
        ok, h = finite[r], hp[r]
        vals = x[r][ok]
        hp_rms = float(np.sqrt(np.mean(h[ok] ** 2)))
        if np.mean(vals >= 0) >= 0.99 and hp_rms < 0.1 * max(float(vals.mean()), 1e-12):
            env = np.clip(filled[r], 0.0, None)  # already an envelope (resampling rings < 0)
        else:
            env = np.sqrt(np.convolve(h ** 2, np.ones(n_win) / n_win, mode="same"))
        out[r] = np.where(ok, env, np.nan)
    return out


def column_means(env: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row and pixel column: the mean of the finite samples, and whether there is one."""
    if env.shape[1] < width:
        grid, at = np.linspace(0, env.shape[1] - 1, width), np.arange(env.shape[1])
        env = np.stack([np.interp(grid, at, row) for row in env])
    starts = (np.arange(width) * env.shape[1]) // width
    finite = np.isfinite(env)
    counts = np.add.reduceat(finite.astype(np.int32), starts, axis=1)
    sums = np.add.reduceat(np.where(finite, env, 0.0), starts, axis=1)
    return sums / np.maximum(counts, 1), counts > 0


def power_db(x: np.ndarray, sfreq: float, row_f: np.ndarray, width: int) -> np.ndarray:
    """Spectrogram power (dB re 1 µV²/Hz) of each row of ``x`` ``(B, n)`` (NaN read as 0),
    sampled at the bins nearest ``row_f`` and at ``width`` columns: ``(B, len(row_f), width)``.
    """
    x = np.where(np.isfinite(x), x, 0.0)  # off-recording parts: no power
    nper = int(round(2.0 * sfreq))  # 2-s windows: 0.5 Hz resolution, enough for 0.5-4 Hz delta
    if x.shape[1] < nper:
        x = np.pad(x, ((0, 0), (0, nper - x.shape[1])))
    freqs, _, sxx = _sps().spectrogram(x, fs=sfreq, window="hann", nperseg=nper,
                                       noverlap=nper - nper // 8, detrend="constant",
                                       scaling="density", mode="psd", axis=-1)
    fi = np.abs(freqs[None, :] - row_f[:, None]).argmin(1)
    ti = (np.arange(width) * sxx.shape[-1]) // width
    return 10.0 * np.log10(sxx[:, fi[:, None], ti[None, :]] + 1e-12)
