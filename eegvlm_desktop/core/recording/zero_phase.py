"""Zero-phase Butterworth and notch filtering in numpy alone, equal to scipy's ``sosfiltfilt``.

Why not scipy.signal: importing it pulls scipy.stats, optimize, interpolate and spatial, about
0.6 s and 75 MB of resident memory, for the three filters the viewer draws with (issue 18:
the viewer starts in <= 1 s and stays under 200 MB). The filters here are the same as
``butter(2, hp, 'highpass')``, ``butter(4, lp, 'lowpass')`` (bilinear transform with
pre-warping, as scipy designs them with ``fs``) and ``iirnotch(f0, Q)``:

* :func:`impulse_response` evaluates the digital cascade's frequency response on a fine
  grid and inverts it: the causal impulse response, cut where what is left of it is below
  ``1e-10`` (an IIR filter's response decays geometrically).
* :func:`filtfilt` applies it forward and backward in one FFT convolution with |H|^2;
  ``padlen`` adds scipy's odd extension.

Away from a signal's ends the result equals ``sosfiltfilt`` to ~1e-9 of the signal's scale
(tested against scipy); near the ends the two differ as two filter start-ups do.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

#: What is left of the impulse response beyond its cut, summed, relative to its peak.
_TAIL = 1e-10
#: Rows filtered together: large enough for few calls, small enough for small buffers.
_ROWS = 3
#: Longest impulse response considered (samples): a 0.01-Hz high-pass at 1 kHz still fits.
_MAX_GRID = 1 << 23


def _butter_poles(order: int) -> np.ndarray:
    """Poles of the normalised analog Butterworth low-pass (left half plane, unit circle)."""
    k = np.arange(1, order + 1)
    return np.exp(1j * np.pi * (2 * k + order - 1) / (2 * order))


def frequency_response(highpass: float | None, lowpass: float | None, notch: float | None,
                       notch_q: float, sfreq: float, n_grid: int) -> np.ndarray:
    """The causal cascade's response at ``n_grid // 2 + 1`` frequencies from 0 to Nyquist.

    High-pass: 2nd-order Butterworth; low-pass: 4th-order Butterworth; notch: scipy's
    ``iirnotch`` (second order, quality ``notch_q``). ``None`` switches a stage off.
    """
    w = 2 * np.pi * np.arange(n_grid // 2 + 1) / n_grid  # rad/sample
    z1 = np.exp(-1j * w)  # z^-1
    with np.errstate(divide="ignore", invalid="ignore"):
        s = 1j * np.tan(w / 2)  # bilinear transform, s in units of 2 * fs
        h = np.ones_like(s)
        if highpass:
            wc = np.tan(np.pi * highpass / sfreq)  # pre-warped cut-off, same units as s
            for p in _butter_poles(2):
                h = h / (wc / s - p)  # low-pass prototype with s/wc -> wc/s
            h[0] = 0.0  # exactly zero at DC
        if lowpass:
            wc = np.tan(np.pi * lowpass / sfreq)
            for p in _butter_poles(4):
                h = h * (-p) / (s / wc - p)
            if n_grid % 2 == 0:
                h[-1] = 0.0  # exactly zero at Nyquist (tan is infinite there)
    if notch:
        w0 = 2 * np.pi * notch / sfreq
        beta = math.tan(w0 / notch_q / 2)  # scipy: gb = 1/sqrt(2), so sqrt(1-gb^2)/gb = 1
        gain = 1 / (1 + beta)
        num = gain * (1 - 2 * math.cos(w0) * z1 + z1 ** 2)
        den = 1 - 2 * gain * math.cos(w0) * z1 + (2 * gain - 1) * z1 ** 2
        h = h * num / den
    return h


@lru_cache(maxsize=32)
def impulse_response(highpass: float | None, lowpass: float | None, notch: float | None,
                     notch_q: float, sfreq: float) -> np.ndarray | None:
    """The cascade's causal impulse response, cut where it has died out; None if no stage.

    The grid doubles until the response has died out well inside it (so that evaluating it
    on a finite grid does not fold the tail back onto the start).
    """
    if not (highpass or lowpass or notch):
        return None
    # First grid from the slowest feature's time constant (~23 of them decay to 1e-10),
    # with room to spare, so that one pass usually suffices (a first open designs these).
    slowest = min(f for f in (highpass, lowpass, notch and notch / notch_q) if f)
    n_grid = 1 << max(12, int(4 * 23 * sfreq / (2 * np.pi * slowest * 0.7)).bit_length())
    while True:
        h = np.fft.irfft(frequency_response(highpass, lowpass, notch, notch_q, sfreq, n_grid),
                         n_grid)
        tail = np.cumsum(np.abs(h[::-1]))[::-1]  # tail[i] = sum(|h[i:]|)
        cut = int(np.argmax(tail < _TAIL * np.abs(h).max()))
        if 0 < cut <= n_grid // 4 or n_grid >= _MAX_GRID:
            return np.ascontiguousarray(h[:cut] if cut > 0 else h)
        n_grid *= 2


def _fast_len(n: int) -> int:
    """Smallest 2^a * 3^b * 5^c >= n (an FFT size numpy's pocketfft handles fast)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _power_spectrum(h: np.ndarray, nfft: int) -> np.ndarray:
    """|H|^2 on an ``nfft`` grid: the forward-backward (zero-phase) filter's response."""
    key = (h.ctypes.data, len(h), nfft)
    spec = _SPECTRA.get(key)
    if spec is None:
        spec = np.abs(np.fft.rfft(h, nfft)) ** 2
        if len(_SPECTRA) > 64:
            _SPECTRA.clear()
        _SPECTRA[key] = spec
    return spec


#: |H|^2 per (impulse response, FFT size); the responses are lru-cached, so never freed.
_SPECTRA: dict[tuple[int, int, int], np.ndarray] = {}


def filtfilt(h: np.ndarray, x: np.ndarray, padlen: int = 0,
             settle: int | None = None) -> np.ndarray:
    """Filter each row of ``x`` forward and backward with impulse response ``h``.

    Done as one FFT convolution with the zero-phase kernel (``h`` correlated with itself,
    |H|^2): two FFTs instead of the four of a forward and a backward pass. Each row is
    extended at both ends by its end value for the kernel's length (the steady state scipy
    starts from); away from the ends the result is scipy's ``sosfiltfilt`` to ~1e-9 of the
    signal's scale. Within a few time constants of the ends it differs as two filter
    start-ups differ, which is why :class:`~.display.DisplaySource` filters each block with
    real neighbouring samples around it and cuts them off.

    Parameters
    ----------
    h : ndarray
        From :func:`impulse_response`.
    x : ndarray, shape (n_rows, n)
        Signals along the last axis.
    padlen : int
        Samples of odd extension at each end (scipy's ``padtype='odd'``); 0 when ``x``'s ends
        are real neighbouring samples that are cut off afterwards.
    settle : int or None
        Samples of end-value extension; None: the kernel's length (scipy's start-up). When
        ``x`` carries that many real neighbouring samples at each end that are cut off
        afterwards, the same number suffices: what the shorter extension changes has died
        out over those neighbours (< 1e-8 of the scale at the display's 2.5 periods), and
        the FFTs are ~20 % shorter.

    Returns
    -------
    ndarray, float64, shape (n_rows, n)
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if padlen > 0:
        left = 2 * x[:, :1] - x[:, padlen:0:-1]
        right = 2 * x[:, -1:] - x[:, -2:-padlen - 2:-1]
        x = np.concatenate([left, x, right], axis=1)
    n = x.shape[1]
    h_len = len(h) if settle is None else max(0, min(int(settle), len(h)))
    nfft = _fast_len(n + 2 * h_len)
    spectrum = _power_spectrum(h, nfft)
    out = np.empty((x.shape[0], n - 2 * padlen))
    # A few rows at a time: the FFT buffers of all rows at once (~10 MB for a 60-s block of
    # 10 channels at 256 Hz) stayed in the worker's heap after each block (issue 18).
    for r0 in range(0, x.shape[0], _ROWS):
        rows = x[r0:r0 + _ROWS]
        ext = np.empty((rows.shape[0], nfft))
        ext[:, :h_len] = rows[:, :1]
        ext[:, h_len:h_len + n] = rows
        ext[:, h_len + n:] = rows[:, -1:]  # to the grid's end: what wraps round is the end
        y = np.fft.irfft(np.fft.rfft(ext, axis=1) * spectrum, nfft, axis=1)
        out[r0:r0 + _ROWS] = y[:, h_len + padlen:h_len + n - padlen]
    return out
