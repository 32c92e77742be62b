"""Standard sleep statistics (TST, SE, WASO, ...) of a hypnogram, as YASA computes them.

The definitions are YASA 0.8's ``yasa.Hypnogram(...).sleep_statistics()`` (AASM), written
out here in numpy with the same arithmetic, order of operations and 4-decimal rounding, so
the numbers are identical (``tests/core/hypnogram/test_stats.py`` compares them with YASA
on random nights). Why not call YASA: importing it pulls pandas, scikit-learn, matplotlib
and seaborn into the viewer, ~1.6 s of GIL-holding imports and ~175 MB of resident memory
for sixteen numbers (issue 18: the viewer must stay under 200 MB before a model loads).
"""
from __future__ import annotations

import math

import numpy as np

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram

#: Keys of :func:`sleep_statistics`, in display order.
STAT_KEYS: tuple[str, ...] = ("TIB", "SPT", "TST", "SE", "SOL", "WASO", "Lat_REM",
                              "W", "N1", "N2", "N3", "R", "%N1", "%N2", "%N3", "%R")

#: Human-readable label with unit, per key, for the statistics panel.
STAT_LABELS: dict[str, str] = {
    "TIB": "Time in bed (min)",
    "SPT": "Sleep period time (min)",
    "TST": "Total sleep time (min)",
    "SE": "Sleep efficiency (%)",
    "SOL": "Sleep onset latency (min)",
    "WASO": "Wake after sleep onset (min)",
    "Lat_REM": "REM latency from sleep onset (min)",
    "W": "Wake (min)",
    "N1": "N1 (min)",
    "N2": "N2 (min)",
    "N3": "N3 (min)",
    "R": "REM (min)",
    "%N1": "N1 (% of TST)",
    "%N2": "N2 (% of TST)",
    "%N3": "N3 (% of TST)",
    "%R": "REM (% of TST)",
}

# Sleep stages, and what is not sleep (YASA's _SLEEP_STAGES / _NON_SLEEP_STAGES in our labels).
_SLEEP = ("N1", "N2", "N3", "R")
_NOT_SLEEP = ("W", "ART", "UNS")


def sleep_statistics(hyp: Hypnogram) -> dict[str, float]:
    """Sleep statistics of a hypnogram, in minutes and percent.

    The hypnogram is taken as the time in bed: crop it to lights-off .. lights-on first,
    or TIB, SE and the latencies count the wake before and after.

    Parameters
    ----------
    hyp : Hypnogram
        Any hypnogram; unscored and artefact epochs count in TIB but never as sleep.

    Returns
    -------
    dict of str to float
        Keys :data:`STAT_KEYS` (see :data:`STAT_LABELS`): TIB, SPT, TST, WASO, SOL,
        Lat_REM (from sleep onset, as AASM reports it: YASA's latency from the start of
        the hypnogram minus SOL) and W/N1/N2/N3/R in minutes; SE in % of TIB; %N1..%R in % of TST. Values that
        are undefined (no sleep, no REM, empty hypnogram) are NaN. YASA rounds every
        value to 4 decimals.
    """
    out = {key: math.nan for key in STAT_KEYS}
    if hyp.n_epochs == 0:
        return out  # YASA refuses an empty hypnogram; every statistic is undefined
    stages = np.array([str(s) for s in hyp.stages], dtype=object)
    # YASA's epoch rate comes from a pandas frequency in whole milliseconds.
    epochs_per_min = 60 * (1 / (int(round(hyp.epoch_length * 1000)) / 1000))
    n = len(stages)
    is_sleep = np.isin(stages, _SLEEP)
    idx_sleep = np.flatnonzero(~np.isin(stages, _NOT_SLEEP))
    has_sleep = idx_sleep.size > 0
    first, last = (int(idx_sleep[0]), int(idx_sleep[-1])) if has_sleep else (0, n)
    spt = slice(first, last + 1)
    raw: dict[str, float] = {"TIB": n / epochs_per_min}
    raw["SPT"] = (last + 1 - first) / epochs_per_min if has_sleep else 0
    raw["WASO"] = np.sum(stages[spt] == "W") / epochs_per_min if has_sleep else math.nan
    raw["TST"] = np.sum(is_sleep[spt]) / epochs_per_min
    raw["SE"] = 100 * raw["TST"] / raw["TIB"]
    raw["SOL"] = first / epochs_per_min if raw["TST"] > 0 else math.nan
    rem = np.flatnonzero(stages == "R")
    raw["Lat_REM"] = rem[0] / epochs_per_min if rem.size else math.nan
    for stage in ("W", "N1", "N2", "N3", "R"):
        raw[stage] = np.sum(stages == stage) / epochs_per_min
    for stage in _SLEEP:
        raw[f"%{stage}"] = 100 * raw[stage] / raw["TST"] if raw["TST"] > 0 else math.nan
    for key in STAT_KEYS:
        out[key] = float(np.round(raw[key], 4))  # YASA rounds every value to 4 decimals
    out["Lat_REM"] = out["Lat_REM"] - out["SOL"]  # NaN stays NaN (no sleep or no REM)
    return out
