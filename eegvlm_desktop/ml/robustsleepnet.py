"""RobustSleepNet inference (Guillot & Thorey, IEEE TNSRE 2021), written from scratch.

Self-contained: depends only on numpy, scipy.signal and torch. The architecture and
the input pipeline follow the facts listed in ``shared/models/README.md`` (weights:
``robustsleepnet-sleep-edf/state_dict.npz``, MIT, Copyright (c) 2021 Dreem).

Public API
----------
- :func:`load_robustsleepnet` -- build the network and strictly load the 49 tensors.
- :func:`preprocess` -- raw signals -> per-epoch log-power spectrograms
  ``(n_epochs, n_channels, 65, 28)``.
- :func:`predict` -- spectrograms -> per-epoch mean log-softmax over all covering
  21-epoch windows, plus 50-d epoch embeddings and 100-d sequence embeddings.

Stage order everywhere: ``STAGES = ("W", "N1", "N2", "N3", "REM")``.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Sequence

import numpy as np
import scipy.signal
import torch
from torch import nn

__all__ = [
    "STAGES",
    "FS",
    "EPOCH_SECONDS",
    "TEMPORAL_CONTEXT",
    "RobustSleepNet",
    "load_robustsleepnet",
    "load_robustsleepnet_arrays",
    "preprocess",
    "standardize_windows",
    "predict",
]

STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
FS: int = 60  # the network's input rate (Hz)
EPOCH_SECONDS: int = 30
EPOCH_SAMPLES: int = FS * EPOCH_SECONDS  # 1800
N_FFT: int = 128  # next power of two above 2 s x 60 Hz
HOP: int = 60  # 1-s overlap of 2-s windows at 60 Hz
N_FREQ: int = N_FFT // 2 + 1  # 65
N_FRAMES: int = (EPOCH_SAMPLES - N_FFT) // HOP + 1  # 28
TEMPORAL_CONTEXT: int = 21  # epochs per input window (training setting)
PAD_VALUE: float = -20.0  # log10 of the power clamp: what an all-zero epoch gives
N_WEIGHTS: int = 49

_BAND = (0.2, 30.0)  # band-pass edges (Hz)
_FILTER_ORDER = 2
_IQR_CLIP = 40.0  # clip bounds = +-40 half-IQRs around zero
_SCALE_CLIP = 20.0  # clamp to +-20, then divide by 20
_POWER_CLAMP = (1e-20, 1e32)


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------
class _Attention(nn.Module):
    """Additive attention: ``u = tanh(W x + b)``, ``score = v . u``, softmax over ``dim``.

    Parameter names (``context_matrix``, ``context_vector``) mirror the checkpoint.
    """

    def __init__(self, in_dim: int, context_size: int) -> None:
        super().__init__()
        self.context_matrix = nn.Linear(in_dim, context_size)
        self.context_vector = nn.Linear(context_size, 1, bias=False)

    def forward(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Weighted sum of ``x`` over axis ``dim`` (features on the last axis)."""
        scores = self.context_vector(torch.tanh(self.context_matrix(x)))  # (..., 1)
        weights = torch.softmax(scores, dim=dim)
        return (weights * x).sum(dim=dim)


class _ChannelAttention(nn.Module):
    """Several attention heads over channels -> fixed number of "virtual channels"."""

    def __init__(self, n_heads: int, in_dim: int, context_size: int) -> None:
        super().__init__()
        for i in range(n_heads):
            self.add_module(f"attention_{i}", _Attention(in_dim, context_size))
        self.n_heads = n_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, T, F). Softmax over C makes the result independent of channel
        # order and valid for any channel count (C = 1 included).
        heads = [getattr(self, f"attention_{i}")(x, dim=1) for i in range(self.n_heads)]
        # head-major flattening: index = head * F + feature
        return torch.cat(heads, dim=-1)  # (B, T, n_heads * F)


class _EpochEncoder(nn.Module):
    """Spectrogram (C, 65, 28) -> per-frame features (28, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.filter_reduction = nn.Linear(N_FREQ, 32)
        self.channel_attention = _ChannelAttention(4, 32, 30)
        self.gru = nn.GRU(4 * 32, 64, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, 65, 28) -> frequencies last for the linear filter bank
        x = self.filter_reduction(x.transpose(2, 3))  # (B, C, 28, 32), no activation
        x = self.channel_attention(x)  # (B, 28, 128)
        out, _ = self.gru(x)  # (B, 28, 128)
        return out


class _EncoderWrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = _EpochEncoder()


class _Reducer(nn.Module):
    """Per-frame linear 128 -> 50, then attention over the 28 frames -> 50-d vector."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = nn.Linear(128, 50)
        self.attention = _Attention(50, 25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.reduction(x), dim=1)


class _ResidualGRULayer(nn.Module):
    """``(Linear(x) + BiGRU(x)) / 2`` -- an average, not a sum."""

    def __init__(self, in_dim: int, cells: int) -> None:
        super().__init__()
        self.residual_connection = nn.Linear(in_dim, 2 * cells)
        self.gru = nn.GRU(in_dim, cells, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)  # zero initial state for every window
        return (self.residual_connection(x) + out) / 2


class _SequenceEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([_ResidualGRULayer(50, 50), _ResidualGRULayer(100, 50)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder:
            x = layer(x)
        return x


class RobustSleepNet(nn.Module):
    """RobustSleepNet for one modality group ("eeg": any EEG/EOG channels).

    ``forward`` takes *standardised* windows ``(B, 21, C, 65, 28)`` (see
    :func:`standardize_windows`) and returns a dict with
    ``log_proba`` (B, 21, 5), ``epoch_embedding`` (B, 21, 50) and
    ``sequence_embedding`` (B, 21, 100).
    """

    def __init__(self) -> None:
        super().__init__()
        # attribute names reproduce the checkpoint's tensor names exactly
        self.encoder_eeg = _EncoderWrapper()
        self.reducer_eeg = _Reducer()
        self.sequence_encoder = _SequenceEncoder()
        self.classifier = nn.Linear(100, len(STAGES))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 5 or x.shape[-2:] != (N_FREQ, N_FRAMES):
            raise ValueError(
                f"x must have shape (batch, epochs, channels, {N_FREQ}, {N_FRAMES}); "
                f"got {tuple(x.shape)}"
            )
        b, t, c = x.shape[:3]
        frames = self.encoder_eeg.encoder(x.reshape(b * t, c, N_FREQ, N_FRAMES))
        emb = self.reducer_eeg(frames).reshape(b, t, 50)
        seq = self.sequence_encoder(emb)  # (B, T, 100)
        logits = self.classifier(seq)
        return {
            "log_proba": torch.log_softmax(logits, dim=-1),
            "epoch_embedding": emb,
            "sequence_embedding": seq,
        }


def load_robustsleepnet(folder: str | os.PathLike[str]) -> RobustSleepNet:
    """Build RobustSleepNet and strictly load ``state_dict.npz`` from ``folder``.

    Parameters
    ----------
    folder : str or path-like
        Directory holding ``state_dict.npz`` (49 float32 arrays, plain numpy; read
        with ``allow_pickle=False`` -- no pickle is ever loaded).

    Returns
    -------
    RobustSleepNet
        The network in eval mode (dropout off), float32, on CPU.

    Raises
    ------
    FileNotFoundError
        If ``folder/state_dict.npz`` does not exist.
    ValueError
        If the archive's names or shapes do not match the architecture exactly.
    """
    path = os.path.join(os.fspath(folder), "state_dict.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"folder must contain state_dict.npz; not found: {path!r}")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return load_robustsleepnet_arrays(arrays)


def load_robustsleepnet_arrays(arrays: dict[str, np.ndarray]) -> RobustSleepNet:
    """Build RobustSleepNet from a ``{tensor name: array}`` table (npz or safetensors).

    Raises
    ------
    ValueError
        If the names or shapes do not match the architecture exactly.
    """
    model = RobustSleepNet()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    if missing or unexpected or len(arrays) != N_WEIGHTS:
        raise ValueError(
            f"The weights must hold exactly the {N_WEIGHTS} tensors of RobustSleepNet; "
            f"missing={missing}, unexpected={unexpected}, given {len(arrays)} arrays"
        )
    tensors = {}
    for name, arr in arrays.items():
        if tuple(arr.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"tensor {name!r} must have shape {tuple(expected[name].shape)}; "
                f"given {tuple(arr.shape)}"
            )
        tensors[name] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    model.load_state_dict(tensors, strict=True)
    return model.eval()


# --------------------------------------------------------------------------------------
# Input pipeline
# --------------------------------------------------------------------------------------
def _check_rate(rate: float, index: int) -> float:
    try:
        fs = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"rates[{index}] must be a positive finite number (Hz); given {rate!r}")
    if not math.isfinite(fs) or fs <= 0:
        raise ValueError(f"rates[{index}] must be a positive finite number (Hz); given {rate!r}")
    return fs


def _check_signal(signal: np.ndarray, index: int) -> np.ndarray:
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"signals[{index}] must be 1-D (samples,); given shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"signals[{index}] must not be empty; given 0 samples")
    finite = np.isfinite(x)
    if not finite.any():
        raise ValueError(f"signals[{index}] must contain finite values; given only NaN/inf")
    if not finite.all():
        # Gaps (NaN/inf) are bridged linearly so the IIR filter does not spread NaN
        # over the whole channel; a recording with only a few bad samples stays usable.
        idx = np.arange(x.size)
        x = x.copy()
        x[~finite] = np.interp(idx[~finite], idx[finite], x[finite])
    return x


def _bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    """Butterworth order 2, 0.2-30 Hz, zero-phase (forward-backward), native rate.

    At rates <= 60 Hz the 30 Hz edge is at or above Nyquist, where a band-pass is not
    defined; there only the 0.2 Hz high-pass (order 2, zero-phase) is applied -- the
    signal holds nothing above Nyquist anyway.
    """
    nyq = fs / 2.0
    if _BAND[1] < nyq:
        b, a = scipy.signal.butter(_FILTER_ORDER, [_BAND[0] / nyq, _BAND[1] / nyq], btype="bandpass")
    else:
        b, a = scipy.signal.butter(_FILTER_ORDER, _BAND[0] / nyq, btype="highpass")
    return scipy.signal.filtfilt(b, a, x)


def _resample_channel(x: np.ndarray, fs: float) -> np.ndarray:
    """Polyphase resample to 60 Hz (scipy's default Kaiser window).

    Works up or down (e.g. 50 Hz -> 60 Hz is up 6 / down 5). The result is zero-padded
    (or trimmed) to ``round(duration * 60)`` samples, ``duration = n / fs``.
    """
    n_target = int(round(x.size / fs * FS))
    ratio = Fraction(FS) / Fraction(fs).limit_denominator(1000)
    if max(ratio.numerator, ratio.denominator) > 1000:
        # odd rates (e.g. 199.97 Hz) would otherwise need enormous polyphase filters
        ratio = ratio.limit_denominator(1000)
    if ratio != 1:
        x = scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator)
    if x.size < n_target:
        x = np.concatenate([x, np.zeros(n_target - x.size)])
    return x[:n_target]


def _normalize_iqr(x: np.ndarray) -> np.ndarray:
    """Robust per-channel scaling; independent of the unit (V or uV).

    Clip to [-40 (median - P25), +40 (P75 - median)] (bounds around zero, as the
    original pipeline does), then subtract the median and divide by the IQR, both
    taken from the clipped signal (IQR 0 -> 1e-5).
    """
    p25, med, p75 = np.percentile(x, [25, 50, 75])
    x = np.clip(x, -_IQR_CLIP * (med - p25), _IQR_CLIP * (p75 - med))
    p25, med, p75 = np.percentile(x, [25, 50, 75])
    iqr = p75 - p25
    if iqr == 0:
        iqr = 1e-5
    return (x - med) / iqr


#: Epochs per block in _epoch_log_spectrogram (each block's temporaries are ~12 MB).
_SPEC_CHUNK = 100


def _epoch_log_spectrogram(epochs: np.ndarray) -> np.ndarray:
    """Log10 power spectrogram of each 30-s epoch separately.

    ``epochs``: (..., 1800) -> (..., 65, 28). Symmetric Hann window of 128 samples
    normalised to sum 1, hop 60, no centring, one-sided FFT of 128.
    """
    window = np.hanning(N_FFT)  # symmetric Hann
    window = window / window.sum()
    starts = np.arange(N_FRAMES) * HOP
    # float32, what the network takes: each value is the float64 result rounded once.
    out = np.empty(epochs.shape[:-1] + (N_FREQ, N_FRAMES), dtype=np.float32)
    # A few hundred epochs at a time: the frames, their FFT and the powers of a whole night
    # at once were ~100 MB of temporaries, the peak of `eegvlm stage` (issue 18).
    for a in range(0, epochs.shape[0], _SPEC_CHUNK):
        frames = epochs[a:a + _SPEC_CHUNK, ..., starts[:, None] + np.arange(N_FFT)[None, :]]
        spec = np.fft.rfft(frames * window, n=N_FFT, axis=-1)  # (..., 28, 65)
        power = np.clip(spec.real**2 + spec.imag**2, *_POWER_CLAMP)
        out[a:a + _SPEC_CHUNK] = np.log10(power).swapaxes(-1, -2)
    return out


def preprocess(signals: Sequence[np.ndarray], rates: Sequence[float]) -> np.ndarray:
    """Raw channels -> per-epoch log-power spectrograms for :func:`predict`.

    Per channel: band-pass (Butterworth order 2, 0.2-30 Hz, zero-phase) at the native
    rate; polyphase resample to 60 Hz; IQR normalisation; clamp to [-20, 20] and
    divide by 20; cut into 30-s epochs; log10 power spectrogram per epoch.

    Parameters
    ----------
    signals : sequence of 1-D numpy arrays
        One array per channel (any number >= 1; any EEG/EOG derivation; any unit).
        Channels may have different rates but should cover the same time span.
        Crop to the period you want scored *before* calling: the IQR statistics are
        taken over everything given. Isolated NaN/inf samples are bridged linearly.
    rates : sequence of float
        Sampling rate (Hz) of each channel, > 0. Rates above 60 Hz are filtered
        0.2-30 Hz and resampled down. At rates <= 60 Hz (e.g. 50 Hz) the 30 Hz edge is
        at/above Nyquist, so only the 0.2 Hz high-pass is applied, then the signal is
        polyphase-resampled *up* to 60 Hz (no content is created above the original
        Nyquist; the top spectrogram bins are then near the -20 floor relative to
        training data -- expect lower accuracy for such inputs). Very low rates
        (< ~1 Hz) are rejected by the filter design.

    Returns
    -------
    numpy.ndarray, float32, shape (n_epochs, n_channels, 65, 28)
        ``n_epochs = floor(shortest channel duration / 30 s)``; a trailing partial
        epoch is dropped. The 900-s zero padding of the original pipeline is not
        included: :func:`predict` adds it (an all-zero epoch is exactly -20 here).

    Raises
    ------
    ValueError
        Empty ``signals``; ``rates`` of another length; a channel that is not 1-D, is
        empty, holds only NaN/inf, or is shorter than 30 s; a rate <= 0 or not finite.
    """
    if isinstance(signals, np.ndarray) and signals.ndim == 1:
        raise ValueError("signals must be a sequence of 1-D arrays (one per channel); "
                         "given a single 1-D array -- wrap it in a list")
    signals = list(signals)
    rates = list(rates)
    if len(signals) == 0:
        raise ValueError("signals must hold at least 1 channel; given 0")
    if len(rates) != len(signals):
        raise ValueError(f"rates must have one entry per channel ({len(signals)}); given {len(rates)}")

    channels = []
    for i, (sig, rate) in enumerate(zip(signals, rates)):
        fs = _check_rate(rate, i)
        x = _check_signal(sig, i)
        if x.size / fs < EPOCH_SECONDS:
            raise ValueError(
                f"signals[{i}] must last at least {EPOCH_SECONDS} s; given {x.size} samples "
                f"at {fs:g} Hz = {x.size / fs:.3f} s"
            )
        if x.size <= 15:
            raise ValueError(f"signals[{i}] must have more than 15 samples for the "
                             f"zero-phase filter; given {x.size}")
        try:
            x = _bandpass(x, fs)
        except ValueError as err:  # e.g. a rate so low that 0.2 Hz is past Nyquist
            raise ValueError(f"rates[{i}] = {fs:g} Hz is too low for the 0.2 Hz "
                             f"high-pass: {err}") from None
        x = _resample_channel(x, fs)
        x = _normalize_iqr(x)
        channels.append(np.clip(x, -_SCALE_CLIP, _SCALE_CLIP) / _SCALE_CLIP)

    n_epochs = min(c.size for c in channels) // EPOCH_SAMPLES
    stacked = np.stack([c[: n_epochs * EPOCH_SAMPLES] for c in channels])  # (C, S)
    epochs = stacked.reshape(len(channels), n_epochs, EPOCH_SAMPLES).swapaxes(0, 1)
    return _epoch_log_spectrogram(epochs)


# --------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------
def standardize_windows(windows: torch.Tensor) -> torch.Tensor:
    """Online standardisation of 21-epoch windows.

    Per window, channel and frequency bin: subtract the mean and divide by the
    unbiased standard deviation (+1e-15) over all epochs x frames of the window.

    Parameters
    ----------
    windows : torch.Tensor, shape (B, T, C, 65, 28)

    Returns
    -------
    torch.Tensor, same shape
    """
    mean = windows.mean(dim=(1, 4), keepdim=True)
    std = windows.std(dim=(1, 4), keepdim=True, unbiased=True)
    return (windows - mean) / (std + 1e-15)


def _window_moments(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std + 1e-15 of every 21-epoch window, as :func:`standardize_windows` takes them.

    Every epoch lies in 21 windows, so computing each window's moments from its own copy
    reads the night 21 times (a fifth of the network's time on a night). Running sums over
    epochs (in float64, so the difference of two sums loses nothing that float32 keeps)
    give all windows' moments in one pass; they agree with the direct ones to float32
    rounding (``tests/ml/test_robustsleepnet.py``).

    Returns
    -------
    mean, scale : torch.Tensor, float32, shape (n_windows, 1, C, 65, 1) for window starts
        ``0 .. n_padded - 21``.
    """
    x = padded
    zero = torch.zeros((1,) + x.shape[1:-1], dtype=torch.float64, device=x.device)
    # Summed in float64 without a float64 copy of the night (~40 MB for 7 h, 3 channels).
    s1 = torch.cat([zero, x.sum(-1, dtype=torch.float64).cumsum(0)])  # (n + 1, C, 65)
    s2 = torch.cat([zero, (x * x).sum(-1, dtype=torch.float64).cumsum(0)])
    t, n = TEMPORAL_CONTEXT, TEMPORAL_CONTEXT * x.shape[-1]
    w1, w2 = s1[t:] - s1[:-t], s2[t:] - s2[:-t]
    mean = w1 / n
    var = ((w2 - w1 * mean) / (n - 1)).clamp_min(0.0)  # unbiased, as torch.std
    shape = (mean.shape[0], 1) + mean.shape[1:] + (1,)
    return (mean.float().reshape(shape),
            (var.sqrt() + 1e-15).float().reshape(shape))


@torch.no_grad()
def predict(
    model: RobustSleepNet,
    spectrograms: np.ndarray,
    batch_windows: int = 32,
    windows: str = "inside",
) -> dict[str, np.ndarray]:
    """Stage every epoch with all 21-epoch windows that cover it.

    The record is padded with 20 all-padding epochs (-20 everywhere, what 900 s of
    zeros give) on each side; a window starts at every epoch (stride 1), so each real
    epoch is covered by exactly 21 windows. An epoch's answer is the mean of its 21
    log-softmax vectors ("geometric" averaging). Recordings shorter than 21 epochs,
    down to a single epoch, work the same way (the rest of the window is padding).

    Parameters
    ----------
    model : RobustSleepNet
        From :func:`load_robustsleepnet`; used in eval mode, on its current device.
    spectrograms : numpy.ndarray, shape (n_epochs, n_channels, 65, 28)
        Output of :func:`preprocess`; n_epochs >= 1, n_channels >= 1.
    batch_windows : int, default 32
        Windows per forward pass (memory ~ batch_windows * 21 * n_channels * 7 kB).
    windows : {"inside", "all"}
        ``"all"``: every window that covers a real epoch, padding included (the published
        protocol; reproduces its SC4001E0 score). ``"inside"`` (default): only windows that
        lie wholly inside the record, so an edge epoch is averaged over fewer windows; a
        record shorter than 21 epochs falls back to ``"all"``. Why: the online
        standardisation of a window that holds padding epochs (log power -20) is dominated
        by them. On a whole night that touches only the first and last 20 epochs, but a
        30-min excerpt is two thirds edge: on 14 30-min pieces of SC4001 (a night the network
        never saw) accuracy was 0.708 with "all" and 0.851 with "inside" (whole night:
        0.867 both ways). The choice was made on SC4001 alone.

    Returns
    -------
    dict of numpy.ndarray
        ``log_proba`` (n_epochs, 5) float32: mean log-softmax, order W, N1, N2, N3, REM;
        ``stage`` (n_epochs,) int64: argmax of ``log_proba``;
        ``epoch_embedding`` (n_epochs, 50): reducer output, mean over covering windows
        (it depends on the window through the online standardisation);
        ``sequence_embedding`` (n_epochs, 100): sequence-encoder output at the epoch,
        mean over covering windows;
        ``n_windows`` (n_epochs,) int64: windows averaged per epoch (21 with
        ``windows="all"``; 1 to 21 with ``"inside"``).

    Raises
    ------
    ValueError
        If ``spectrograms`` is not 4-D with trailing (65, 28), has no epoch or channel,
        or holds non-finite values; if ``batch_windows`` < 1.
    """
    spec = np.asarray(spectrograms)
    if spec.ndim != 4 or spec.shape[2:] != (N_FREQ, N_FRAMES):
        raise ValueError(
            f"spectrograms must have shape (n_epochs, n_channels, {N_FREQ}, {N_FRAMES}); "
            f"given {spec.shape}"
        )
    n_epochs, n_channels = spec.shape[:2]
    if n_epochs < 1 or n_channels < 1:
        raise ValueError(f"spectrograms must have >= 1 epoch and >= 1 channel; given {spec.shape}")
    if not np.isfinite(spec).all():
        raise ValueError("spectrograms must be finite; given NaN/inf values")
    if int(batch_windows) < 1:
        raise ValueError(f"batch_windows must be an integer >= 1; given {batch_windows!r}")
    if windows not in ("inside", "all"):
        raise ValueError(f"windows must be one of 'inside', 'all'; given {windows!r}")
    model.eval()
    device = next(model.parameters()).device

    t = TEMPORAL_CONTEXT
    pad = t - 1  # enough padding for every window that covers a real epoch
    padded = np.full((n_epochs + 2 * pad, n_channels, N_FREQ, N_FRAMES), PAD_VALUE, np.float32)
    padded[pad : pad + n_epochs] = spec
    padded_t = torch.from_numpy(padded).to(device)
    # window w covers padded epochs w .. w+20
    if windows == "inside" and n_epochs >= t:
        first, n_windows = pad, n_epochs - t + 1
    else:
        first, n_windows = 0, n_epochs + pad

    # accumulators indexed in padded coordinates; real epochs are pad..pad+n_epochs-1
    acc_lp = torch.zeros(n_epochs + 2 * pad, len(STAGES), dtype=torch.float64)
    acc_emb = torch.zeros(n_epochs + 2 * pad, 50, dtype=torch.float64)
    acc_seq = torch.zeros(n_epochs + 2 * pad, 100, dtype=torch.float64)
    counts = torch.zeros(n_epochs + 2 * pad, dtype=torch.int64)
    offsets = torch.arange(t)
    mean_w, scale_w = _window_moments(padded_t)
    for start in range(first, first + n_windows, int(batch_windows)):
        stop = min(start + int(batch_windows), first + n_windows)
        idx = torch.arange(start, stop)[:, None] + offsets[None, :]  # (B, 21)
        # standardize_windows, with each window's moments from running sums (below)
        windows = (padded_t[idx.to(device)] - mean_w[start:stop]) / scale_w[start:stop]
        out = model(windows)
        flat = idx.reshape(-1)
        acc_lp.index_add_(0, flat, out["log_proba"].reshape(-1, len(STAGES)).double().cpu())
        acc_emb.index_add_(0, flat, out["epoch_embedding"].reshape(-1, 50).double().cpu())
        acc_seq.index_add_(0, flat, out["sequence_embedding"].reshape(-1, 100).double().cpu())
        counts.index_add_(0, flat, torch.ones_like(flat))

    sl = slice(pad, pad + n_epochs)
    cnt = counts[sl].double()[:, None]
    log_proba = (acc_lp[sl] / cnt).float().numpy()
    return {
        "log_proba": log_proba,
        "stage": log_proba.argmax(axis=1).astype(np.int64),
        "epoch_embedding": (acc_emb[sl] / cnt).float().numpy(),
        "sequence_embedding": (acc_seq[sl] / cnt).float().numpy(),
        "n_windows": counts[sl].numpy().astype(np.int64),
    }
