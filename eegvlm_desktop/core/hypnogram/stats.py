"""Standard sleep statistics (TST, SE, WASO, ...) of a hypnogram, computed by YASA.

YASA follows the AASM definitions; this module only converts our :class:`Hypnogram` to
YASA's input, renames YASA's keys to the app's and fills undefined values with NaN.

``yasa.sleep_statistics`` (the integer-array function) is deprecated in YASA 0.8 and emits
a ``FutureWarning`` on every call; it also reports no wake duration. We use its documented
replacement, ``yasa.Hypnogram(...).sleep_statistics()``, which takes the same definitions.
"""
from __future__ import annotations

import math
import warnings

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

# Our key -> YASA's key, where they differ.
_YASA_KEYS = {"W": "WAKE", "R": "REM", "%R": "%REM"}
# Our stage labels -> YASA's canonical 5-stage labels (ART and UNS are the same).
_YASA_STAGES = {"W": "WAKE", "R": "REM"}


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
    values = [_YASA_STAGES.get(str(s), str(s)) for s in hyp.stages]
    # Whole milliseconds so any epoch length (2.5 s, 30 s) is an exact pandas frequency.
    freq = f"{int(round(hyp.epoch_length * 1000))}ms"
    # YASA (and pandas underneath) may warn about their own internals across versions;
    # those are not the user's concern and must not turn into errors in the app or tests.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import yasa  # slow (~2 s): only when statistics are actually asked for

        stats = yasa.Hypnogram(values, n_stages=5, freq=freq).sleep_statistics()
    for key in STAT_KEYS:
        value = stats.get(_YASA_KEYS.get(key, key), math.nan)
        out[key] = float(value)
    out["Lat_REM"] = out["Lat_REM"] - out["SOL"]  # NaN stays NaN (no sleep or no REM)
    return out


def preload() -> None:
    """Import YASA now (~1.6 s of mostly GIL-holding Python imports).

    The app calls this on its job worker at start-up, so that the first statistics
    request after opening a night does not slow the GUI thread while the scorer pages.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import yasa  # noqa: F401
