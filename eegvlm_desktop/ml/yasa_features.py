"""YASA 0.8.1's EEG-only sleep-staging features, in numpy and scipy alone.

``yasa.SleepStaging(raw, eeg_name=...).get_features()`` imports antropy, whose numba functions
compile eagerly on import (~5 s and ~300 MB in a fresh process on 2 cores), and pandas and
scikit-learn for two rolling means and a robust scaling. The cohort stager computes the same
65 features here, in the same order of operations, so that the classifier sees the same
numbers: ``tests/ml/test_yasa_features.py`` compares them with YASA's own, column by column.

Only the EEG-only feature set (no EOG, no EMG, no metadata) is implemented: it is the one the
shipped classifier was trained on. antropy's functions are re-implemented from antropy 0.2.x
(BSD-3-Clause, Raphael Vallat); the Higuchi sums use ``cumsum`` because numba's loop adds
left to right, which ``np.sum``'s pairwise summation does not.
"""
from __future__ import annotations

from math import factorial

import numpy as np

#: YASA's rate: it resamples every signal to 100 Hz before computing features.
RATE = 100.0
#: YASA's broadband filter (Hz) and its bands (Hz, name).
_BROAD = (0.4, 30.0)
_BANDS = ((0.4, 1, "sdelta"), (1, 4, "fdelta"), (4, 8, "theta"), (8, 12, "alpha"),
          (12, 16, "sigma"), (16, 30, "beta"))
#: Epochs whose features are computed together (memory, not arithmetic: see eeg_features).
_BLOCK = 128
#: antropy's regression guard (``antropy.utils.epsilon``).
_EPS = 1e-9
#: antropy's lookup of order-3 ordinal patterns: 3-bit comparison key -> pattern 0..5.
_PE3 = np.zeros(8, dtype=np.int64)
for _key, _pattern in ((0b000, 0), (0b001, 1), (0b100, 2), (0b110, 3), (0b011, 4), (0b111, 5)):
    _PE3[_key] = _pattern


def _hjorth(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dx = np.diff(x, axis=1)
    ddx = np.diff(dx, axis=1)
    x_var, dx_var, ddx_var = np.var(x, axis=1), np.var(dx, axis=1), np.var(ddx, axis=1)
    mob = np.sqrt(dx_var / x_var)
    return mob, np.sqrt(ddx_var / dx_var) / mob


def _zerocross(x: np.ndarray) -> np.ndarray:
    return np.diff(np.signbit(x), axis=1).sum(axis=1)


def _perm_entropy(x: np.ndarray) -> np.ndarray:
    """Normalised permutation entropy, order 3, delay 1 (antropy's lookup-table path)."""
    c0, c1, c2 = x[:, :-2], x[:, 1:-1], x[:, 2:]
    key = (((c0 <= c1).astype(np.uint8) << 2) | ((c0 <= c2).astype(np.uint8) << 1)
           | (c1 <= c2).astype(np.uint8))
    n, m = key.shape
    offsets = (np.arange(n, dtype=np.int64) * 6)[:, None]
    counts = np.bincount((_PE3[key] + offsets).ravel(), minlength=n * 6).reshape(n, 6)
    p = counts / m
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(p > 0, np.log2(p), 0.0)
    # Epoch by epoch, as YASA applies antropy along the rows: a 6-term sum per row.
    out = np.array([-(p[i:i + 1] * log_p[i:i + 1]).sum(axis=1)[0] for i in range(n)])
    out /= np.log2(factorial(3))
    return np.minimum(np.maximum(out, 0.0), 1.0)


def _higuchi(x: np.ndarray, kmax: int = 10) -> np.ndarray:
    """Higuchi fractal dimension of each row, with antropy's arithmetic in its order."""
    n_rows, n_times = x.shape
    x_reg = [np.log(1.0 / k) for k in range(1, kmax + 1)]
    y_reg = []
    for k in range(1, kmax + 1):
        m_lm = np.zeros(n_rows)
        for m in range(k):
            n_max = int(np.floor((n_times - m - 1) / k))
            steps = np.abs(np.diff(x[:, m:m + n_max * k + 1:k], axis=1))
            ll = np.cumsum(steps, axis=1)[:, -1] if n_max else np.zeros(n_rows)
            ll = ll / k
            ll = ll * ((n_times - 1) / (k * n_max))
            m_lm = m_lm + ll
        m_lm = m_lm / k
        with np.errstate(divide="ignore"):
            y_reg.append(np.where(m_lm > 0, np.log(np.where(m_lm > 0, m_lm, 1.0)), -np.inf))
    sx2 = sx = 0.0
    sy = sxy = np.zeros(n_rows)
    for xj, yj in zip(x_reg, y_reg):
        sx2 = sx2 + xj ** 2
        sx = sx + xj
        sxy = sxy + xj * yj
        sy = sy + yj
    den = kmax * sx2 - sx ** 2
    return (kmax * sxy - sx * sy) / (den + _EPS)


def _petrosian(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    nzc = _zerocross(np.diff(x, axis=1))
    return np.log10(n) / (np.log10(n) + np.log10(n / (n + 0.4 * nzc)))


def _simpson(psd: np.ndarray, freqs: np.ndarray, lo: float, hi: float, res: float) -> np.ndarray:
    from scipy.integrate import simpson

    return simpson(psd[:, (freqs >= lo) & (freqs <= hi)], dx=res, axis=-1)


def _epoch_features(epochs: np.ndarray) -> dict[str, np.ndarray]:
    """The per-epoch features of YASA's ``fit`` for an EEG channel, in its column order."""
    from scipy.integrate import trapezoid
    from scipy.signal import welch

    hmob, hcomp = _hjorth(epochs)
    q = np.quantile(epochs, [0.25, 0.75], axis=1)
    dev = epochs - epochs.mean(axis=1, keepdims=True)
    dev2 = dev ** 2
    m2 = dev2.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN for flat epochs, as in YASA
        skew = (dev2 * dev).mean(axis=1) / m2 ** 1.5
        kurt = (dev2 ** 2).mean(axis=1) / m2 ** 2 - 3
    feat = {"std": np.std(epochs, ddof=1, axis=1), "iqr": q[1] - q[0], "skew": skew,
            "kurt": kurt, "nzc": _zerocross(epochs), "hmob": hmob, "hcomp": hcomp}
    freqs, psd = welch(epochs, RATE, window="hamming", nperseg=int(5 * RATE), average="median")
    # yasa.bandpower_from_psd_ndarray: Simpson's rule over each band, relative to 0.4-30 Hz.
    good = (freqs >= _BANDS[0][0]) & (freqs <= _BANDS[-1][1])
    f_good = freqs[good]
    res = f_good[1] - f_good[0]
    total = _simpson(psd[:, good], f_good, -np.inf, np.inf, res)
    for lo, hi, name in _BANDS:
        feat[name] = _simpson(psd[:, good], f_good, lo, hi, res) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = feat["sdelta"] + feat["fdelta"]
        feat["dt"] = delta / feat["theta"]
        feat["ds"] = delta / feat["sigma"]
        feat["db"] = delta / feat["beta"]
        feat["at"] = feat["alpha"] / feat["theta"]
    broad = (freqs >= _BROAD[0]) & (freqs <= _BROAD[1])
    feat["abspow"] = trapezoid(psd[:, broad], dx=freqs[1] - freqs[0])
    feat["perm"] = _perm_entropy(epochs)
    feat["higuchi"] = _higuchi(epochs)
    feat["petrosian"] = _petrosian(epochs)
    return feat


def _triang_centred_mean(values: np.ndarray, window: int = 15) -> np.ndarray:
    """``DataFrame.rolling(window, center=True, min_periods=1, win_type='triang').mean()``.

    pandas' weighted rolling mean, in its order: the series is padded with ``(window-1)//2``
    NaNs at the end, each weight is added over the whole series in turn, and the centred
    result is the trailing one shifted back by that offset.
    """
    from scipy.signal.windows import triang

    weights = triang(window)
    offset = (window - 1) // 2
    x = np.concatenate([values, np.full((offset, values.shape[1]), np.nan)])
    n = len(x)
    total = np.zeros_like(x)
    counts = np.zeros_like(x)
    wsum = np.zeros_like(x)
    ok = ~np.isnan(x)
    for w_i, w in enumerate(weights):
        lo, hi = window - w_i - 1, n  # output rows that weight w_i reaches
        src = x[:hi - lo]
        keep = ok[:hi - lo]
        total[lo:hi] += np.where(keep, src * w, 0.0)
        counts[lo:hi] += keep
        wsum[lo:hi] += np.where(keep, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((counts >= 1) & (wsum != 0), total / wsum, np.nan)
    return out[offset:]


def _trailing_mean(values: np.ndarray, window: int = 4) -> np.ndarray:
    """``DataFrame.rolling(window, min_periods=1).mean()``, with pandas' running sum.

    pandas adds each new row to a Kahan-compensated running sum and subtracts the row that
    leaves the window (with a compensation of its own); replaying that order gives its
    numbers to the last bit, which a plain mean of the window does not.
    """
    n, n_cols = values.shape
    out = np.empty((n, n_cols))
    total = np.zeros(n_cols)
    comp_add = np.zeros(n_cols)
    comp_rem = np.zeros(n_cols)
    nobs = np.zeros(n_cols, dtype=np.int64)
    neg = np.zeros(n_cols, dtype=np.int64)
    same = np.zeros(n_cols, dtype=np.int64)
    prev = np.full(n_cols, np.nan)
    for i in range(n):
        if i >= window:  # the row leaving the window (NaNs were never added)
            old = values[i - window]
            ok = ~np.isnan(old)
            y = -old - comp_rem
            t = total + y
            comp_rem = np.where(ok, t - total - y, comp_rem)
            total = np.where(ok, t, total)
            nobs -= ok
            neg -= ok & np.signbit(old)
        val = values[i]
        ok = ~np.isnan(val)
        y = val - comp_add
        t = total + y
        comp_add = np.where(ok, t - total - y, comp_add)
        total = np.where(ok, t, total)
        nobs += ok
        neg += ok & np.signbit(val)
        same = np.where(ok, np.where(val == prev, same + 1, 1), same)
        prev = np.where(ok, val, prev)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / nobs
        mean = np.where(same >= nobs, prev, mean)
        mean = np.where((neg == 0) & (mean < 0), 0.0, mean)
        mean = np.where((neg == nobs) & (mean > 0), 0.0, mean)
        out[i] = np.where(nobs >= 1, mean, np.nan)
    return out


def _robust_scale(x: np.ndarray) -> np.ndarray:
    """``sklearn.preprocessing.robust_scale(x, quantile_range=(5, 95))`` per column."""
    # A column that is NaN throughout (a flat night's skewness) stays NaN; it is scaled by a
    # stand-in so that numpy does not warn about an all-NaN slice.
    empty = np.isnan(x).all(axis=0)
    x_ok = np.where(empty, 0.0, x)
    centre = np.nanmedian(x_ok, axis=0)
    q = np.transpose([np.nanpercentile(x_ok[:, j], (5.0, 95.0)) for j in range(x.shape[1])])
    scale = q[1] - q[0]
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0  # sklearn's guard for constants
    return (x - centre) / scale


def eeg_features(data_uv: np.ndarray) -> tuple[list[str], np.ndarray]:
    """YASA's EEG-only staging features of a 100-Hz EEG signal, one row per 30-s epoch.

    Parameters
    ----------
    data_uv : ndarray, shape (n_samples,)
        The EEG at :data:`RATE` Hz in µV, as ``yasa.SleepStaging`` holds it after its own
        resampling; at least one 30-s epoch (a trailing partial epoch is dropped).

    Returns
    -------
    names : list of str
        Column names, sorted as YASA sorts them (``eeg_abspow``, ..., ``time_norm``).
    features : ndarray, shape (n_epochs, 65)
        float64 holding YASA's float32 values (and the integer zero-crossing counts), as
        ``features.to_numpy()`` gives them to the classifier.
    """
    from mne.filter import filter_data

    x = np.asarray(data_uv, dtype=np.float64)
    per = int(30 * RATE)
    if x.ndim != 1 or len(x) < per:
        raise ValueError(f"The 'data_uv' parameter must be a 1-D signal of at least one 30-s "
                         f"epoch ({per} samples at {RATE:g} Hz), but got shape {x.shape}.")
    filt = filter_data(x[None], RATE, l_freq=_BROAD[0], h_freq=_BROAD[1], verbose=False)[0]
    n = len(filt) // per
    epochs = filt[:n * per].reshape(n, per)
    # A flat epoch gives 0/0 (NaN) in several features, as in YASA; no warning for it (the
    # quality gate reports flat epochs). errstate is per thread: safe on the model worker.
    with np.errstate(all="ignore"):
        # Blocks of epochs: every feature is computed row by row, so a block gives the same
        # numbers, and the temporaries (quantiles, moments, Welch segments, Higuchi steps)
        # stay ~20 MB instead of ~180 MB for a night.
        blocks = [_epoch_features(epochs[i:i + _BLOCK]) for i in range(0, n, _BLOCK)]
    feat = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    base = list(feat)
    raw = np.column_stack([np.asarray(feat[k], dtype=np.float64) for k in base])
    columns = {f"eeg_{k}": (raw[:, j], feat[k].dtype) for j, k in enumerate(base)}
    for suffix, rolled in (("_c7min_norm", _robust_scale(_triang_centred_mean(raw))),
                           ("_p2min_norm", _robust_scale(_trailing_mean(raw)))):
        for j, k in enumerate(base):
            columns[f"eeg_{k}{suffix}"] = (rolled[:, j], np.dtype(np.float64))
    times = np.arange(n) * 30.0
    columns["time_hour"] = (times / 3600, np.dtype(np.float64))
    columns["time_norm"] = (times / times[-1] if times[-1] > 0 else np.zeros_like(times),
                            np.dtype(np.float64))
    names = sorted(columns)
    # YASA stores float64 columns as float32 (integer ones stay integer).
    out = np.column_stack([
        columns[k][0].astype(np.float32) if columns[k][1] == np.float64 else columns[k][0]
        for k in names]).astype(np.float64)
    return names, out
