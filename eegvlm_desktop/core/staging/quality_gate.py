"""Per-epoch signal-quality gate: which epochs no stager should answer for (numpy only).

An EEG that is flat, near zero (a file storing volts where its header says µV), constant or
clipped for most of an epoch carries no sleep information; any classifier still returns a
confident-looking answer for it (the shipped model called a flat EEG REM with 0.9). The gate
marks such an epoch *unscorable* with the reason, and the app and ``eegvlm stage`` show that
instead of a stage. An epoch is unscorable when **none** of the EEG channels the stagers read
is usable in it; a single bad channel of several is only reported.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Below this RMS (µV, mean removed) an EEG epoch is flat: real sleep EEG is 5-150 µV RMS.
FLAT_RMS_UV = 0.5
#: Below this it is "near zero": values of a file storing volts as µV are ~1e-5.
NEAR_ZERO_RMS_UV = 1e-3
#: Clipped: at least this fraction of the epoch sits on its own extreme values (a rail).
CLIPPED_FRACTION = 0.2
#: Samples within this fraction of the epoch's peak-to-peak of an extreme count as on it.
_RAIL_TOL = 1e-3
#: More than this fraction of missing samples (NaN gaps of EDF+D files) and the epoch is void.
MISSING_FRACTION = 0.5
UNSCORABLE = "UNS"


def channel_problem(x: np.ndarray) -> str:
    """Why one channel's epoch (µV) is unusable, or '' when it is usable.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        The epoch's samples in µV; NaN marks missing samples.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return "no samples"
    finite = np.isfinite(x)
    if finite.mean() < 1.0 - MISSING_FRACTION:
        return f"{100 * (1 - finite.mean()):.0f} % of the samples are missing"
    x = x[finite]
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return f"constant at {lo:g} µV"
    rms = float(np.sqrt(np.mean((x - x.mean()) ** 2)))
    if rms < NEAR_ZERO_RMS_UV:
        return (f"near zero ({rms:.1e} µV RMS): the file probably stores volts where its header "
                "says µV")
    if rms < FLAT_RMS_UV:
        return f"flat ({rms:.2f} µV RMS)"
    tol = _RAIL_TOL * (hi - lo)
    on_rail = float(np.mean((x <= lo + tol) | (x >= hi - tol)))
    if on_rail >= CLIPPED_FRACTION:
        return (f"clipped: {100 * on_rail:.0f} % of the samples sit at its limits "
                f"({lo:.0f} / {hi:.0f} µV)")
    return ""


def epoch_quality(recording: Any, channels: Sequence[int],
                  epochs: Sequence[int] | None = None, epoch_length: float = 30.0,
                  chunk_epochs: int = 240) -> list[str]:
    """The reason each epoch is unscorable, or '' when at least one channel is usable.

    Parameters
    ----------
    recording : Recording
        The open recording (``get_data`` in µV, ``sfreq``, ``n_times``).
    channels : sequence of int
        The EEG channels the stagers read (e.g. the montage roles' EEG channels).
    epochs : sequence of int, optional
        Epochs to check; default every complete epoch.
    epoch_length : float
        Seconds per epoch.
    chunk_epochs : int
        Epochs read per call (bounds memory on 24-h files).

    Returns
    -------
    list of str
        One entry per requested epoch: '' or e.g. "EEG C3-A1: flat (0.02 µV RMS)".
    """
    if not channels:
        raise ValueError("Invalid value for the 'channels' parameter: it must name at least one "
                         "EEG channel index, but got an empty list.")
    sf = float(recording.sfreq)
    n_s = int(round(epoch_length * sf))
    n_ep = int(recording.n_times // n_s)
    want = list(range(n_ep)) if epochs is None else [int(e) for e in epochs]
    bad = [e for e in want if not 0 <= e < n_ep]
    if bad:
        raise ValueError(f"Invalid value for the 'epochs' parameter: epochs must be in "
                         f"0..{n_ep - 1}, but got {bad[:5]}.")
    names = [recording.ch_names[c] for c in channels]
    reasons: dict[int, str] = {}
    for start in range(0, len(want), chunk_epochs):
        block = want[start:start + chunk_epochs]
        lo, hi = min(block), max(block) + 1
        data = recording.get_data(list(channels), lo * n_s, hi * n_s)
        for e in block:
            seg = data[:, (e - lo) * n_s:(e - lo + 1) * n_s]
            problems = [channel_problem(row) for row in seg]
            if all(problems):
                reasons[e] = "; ".join(f"{n}: {p}" for n, p in zip(names, problems))
            else:
                reasons[e] = ""
    return [reasons[e] for e in want]
