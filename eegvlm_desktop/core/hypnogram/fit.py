"""Put imported stages on a recording's epoch grid, and check or force the fit.

The readers (:mod:`.read`) lay stage events on the grid with :func:`build_grid`; callers
fit the result to a recording with :func:`check_fit` / :func:`fit_to_recording`. The rules:

* stage events become epochs; gaps become unscored; overlaps are refused;
* nothing is resampled: another epoch length raises :class:`HypnogramMismatchError`;
* unscored epochs outside the recording may be dropped automatically (Sleep-EDF's
  trailing ``Sleep stage ?``); anything that would lose or invent stages is the user's choice.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from eegvlm_desktop.core.errors import HypnogramError, HypnogramMismatchError, check_option
from eegvlm_desktop.core.hypnogram.hypnogram import PROVENANCES, Hypnogram
from eegvlm_desktop.core.stages import UNS

#: Policies of :func:`fit_to_recording`.
FIT_POLICIES: tuple[str, ...] = ("crop", "pad", "crop_or_pad")
_TOL = 1e-3  # s: onsets in files are often rounded to the millisecond
# Epoch lengths seen in practice, used to name the epoch length of a bare list of codes.
_COMMON_EPOCHS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 15.0, 20.0, 30.0, 60.0)

#: A stage event: (onset s, duration s or None, AASM label, source label, provenance or None).
Event = tuple[float, "float | None", str, str, "str | None"]


def offset_epochs(hyp: Hypnogram, epoch_length: float) -> int | None:
    """Index of the recording epoch where ``hyp`` starts, or ``None`` if off the grid."""
    k = hyp.start / epoch_length
    return int(round(k)) if abs(k - round(k)) * epoch_length <= _TOL else None


def window(hyp: Hypnogram, lo: int, hi: int, start: float) -> Hypnogram:
    """Epochs ``lo .. hi-1`` of ``hyp``; indices outside it become unscored epochs.

    Labels, provenance and probabilities are kept for the epochs taken from ``hyp``.
    """
    n = hyp.n_epochs
    idx = np.arange(lo, hi)
    inside = (idx >= 0) & (idx < n)
    src = np.clip(idx, 0, max(n - 1, 0))
    stages = [str(hyp.stages[j]) if ok else UNS for j, ok in zip(src, inside)]
    prov = [str(hyp.provenance[j]) if ok else "none" for j, ok in zip(src, inside)]
    proba = np.full((len(idx), hyp.proba.shape[1]), np.nan)
    if n:
        proba[inside] = hyp.proba[src[inside]]
    return Hypnogram(stages, hyp.epoch_length, start, hyp.scorer, proba, prov)


def epoch_mismatch(name: str, found: float, expected: float,
                   why: str = "") -> HypnogramMismatchError:
    """The error for a file scored in ``found``-second epochs instead of ``expected``."""
    return HypnogramMismatchError(
        f"'{name}' is scored in {found:g} s epochs{why}, but {expected:g} s epochs are "
        f"expected. Rescore or convert it to {expected:g} s epochs first; it is not resampled "
        f"automatically.", [f"Epoch length in the file: {found:g} s; expected: {expected:g} s."])


def check_implicit_epochs(n: int, name: str, epoch_length: float,
                          duration: float | None) -> None:
    """Refuse a bare list of ``n`` codes that must be shorter epochs than expected.

    Such a list carries no epoch length; when it is far too long for the recording and
    the recording's length divided by ``n`` is a usual epoch length (5 s for DREAMS),
    that is what the file uses, and :func:`epoch_mismatch` is raised.
    """
    if not duration or n * epoch_length <= duration + epoch_length:
        return
    implied = duration / n
    guess = next((c for c in _COMMON_EPOCHS if abs(implied - c) <= 0.02 * c), None)
    if guess is not None and guess < epoch_length:
        raise epoch_mismatch(name, guess, epoch_length,
                             f" ({n} epochs for a {duration:g} s recording)")


def build_grid(events: Sequence[Event], name: str, epoch_length: float, notes: list[str]
               ) -> tuple[list[str], list[str], float]:
    """Lay stage events on the epoch grid.

    Parameters
    ----------
    events : sequence of Event
        Stage events in any order. A missing or zero duration means one epoch.
    name : str
        File name, for messages.
    epoch_length : float
        Expected epoch length in seconds.
    notes : list of str
        Appended to with what was done (events without duration, duplicates).

    Returns
    -------
    stages, provenance : list of str
        One entry per epoch; gaps between events are unscored.
    start : float
        Onset of the first event, in seconds.

    Raises
    ------
    HypnogramMismatchError
        Durations or onsets are not on an ``epoch_length`` grid.
    HypnogramError
        Two events overlap.
    """
    L = epoch_length
    events = sorted(events, key=lambda e: e[0])
    no_dur = sum(1 for e in events if e[1] is None or not e[1] > 0)
    if no_dur:
        notes.append(f"{no_dur} stage annotation(s) had no duration and were read as one "
                     f"{L:g} s epoch each.")
    events = [(on, d if d is not None and d > 0 else L, *rest) for on, d, *rest in events]
    t0 = events[0][0]
    spans = [e[1] for e in events] + [e[0] - t0 for e in events]
    if any(abs(v / L - round(v / L)) * L > _TOL for v in spans):
        # The gcd of all spans (in ms) names the grid the file really uses (5 s for DREAMS).
        grid = math.gcd(*(int(round(v * 1000)) for v in spans)) / 1000
        raise epoch_mismatch(name, grid, L)
    stages: list[str] = []
    prov: list[str] = []
    prev = None
    dupes = 0
    for on, dur, aasm, src, pv in events:
        cursor = t0 + len(stages) * L
        if on < cursor - _TOL:
            if prev is not None and (on, dur, aasm) == prev[:3]:
                dupes += 1  # some exporters write an annotation twice; harmless
                continue
            raise HypnogramError(
                f"'{name}' has overlapping stage annotations: {prev[3]!r} at "
                f"{_hms(prev[0])} to {_hms(prev[0] + prev[1])} and {src!r} at {_hms(on)} to "
                f"{_hms(on + dur)}. Each epoch needs exactly one stage; fix the file in the "
                f"scoring software.")
        gap = int(round((on - cursor) / L))
        stages += [UNS] * gap
        prov += ["none"] * gap
        k = int(round(dur / L))
        stages += [aasm] * k
        # A provenance column (our own CSV) is kept; otherwise the Hypnogram default rule.
        prov += [pv if pv in PROVENANCES else ("none" if aasm == UNS else "import")] * k
        prev = (on, dur, aasm, src)
    if dupes:
        notes.append(f"{dupes} duplicated stage annotation(s) were ignored.")
    return stages, prov, t0


def _hms(t: float) -> str:
    """``'8:30:30 (30630 s)'``: clock-like offset plus seconds, so users find it either way."""
    s = abs(t)
    return (f"{'-' if t < 0 else ''}{int(s // 3600)}:{int(s % 3600 // 60):02d}:"
            f"{int(s % 60):02d} ({t:g} s)")


def drop_unscored_outside(hyp: Hypnogram, duration: float, notes: list[str]) -> Hypnogram:
    """Drop unscored epochs before the start or past the end of a ``duration``-s recording.

    Only runs that are entirely unscored are dropped (with a note); scored epochs outside
    the recording are kept so :func:`check_fit` reports them and the user decides.
    """
    L = hyp.epoch_length
    first = offset_epochs(hyp, L)
    if first is None:
        return hyp  # off the grid: check_fit explains it, nothing can be dropped safely
    n = hyp.n_epochs
    n_rec = int(math.floor(duration / L + 1e-6))
    stages = np.asarray(hyp.stages)
    lo = min(max(0, -first), n)
    if lo and np.all(stages[:lo] == UNS):
        notes.append(f"{lo} leading unscored epochs before the start of the recording "
                     f"were dropped.")
    else:
        lo = 0
    tail = n - max(min(n, n_rec - first), lo)
    if tail > 0 and np.all(stages[n - tail:] == UNS):
        notes.append(f"{tail} trailing unscored epochs past the end of the recording "
                     f"were dropped.")
    else:
        tail = 0
    if lo == 0 and tail == 0:
        return hyp
    return window(hyp, lo, n - tail, hyp.start + lo * L)


def _extent(hyp: Hypnogram, n_epochs: int, first: int) -> dict[str, int]:
    """Epochs of ``hyp`` outside the recording, and recording epochs it does not cover."""
    n = hyp.n_epochs
    stages = np.asarray(hyp.stages)
    before = min(n, max(0, -first))
    after = min(n - before, max(0, first + n - n_epochs))
    return {
        "before": before, "after": after,
        "before_scored": int(np.sum(stages[:before] != UNS)),
        "after_scored": int(np.sum(stages[n - after:] != UNS)) if after else 0,
        "missing_front": max(0, min(first, n_epochs)),
        "missing_end": max(0, n_epochs - max(first + n, 0)),
    }


def _scored_words(scored: int) -> str:
    if scored == 0:
        return "all of them are unscored"
    return f"{scored} of them {'is' if scored == 1 else 'are'} scored and would be lost by cropping"


def check_fit(hyp: Hypnogram, n_epochs: int, epoch_length: float = 30.0) -> list[str]:
    """Describe how ``hyp`` does not fit a recording of ``n_epochs`` epochs.

    Parameters
    ----------
    hyp : Hypnogram
        The imported hypnogram.
    n_epochs : int
        Number of epochs in the recording.
    epoch_length : float
        The recording's epoch length in seconds.

    Returns
    -------
    list of str
        One human-readable line per problem; empty when the hypnogram fits exactly.
    """
    if int(n_epochs) != n_epochs or n_epochs < 0:
        raise ValueError(f"'n_epochs' must be a whole number >= 0, got {n_epochs!r}.")
    if not epoch_length > 0:
        raise ValueError(f"'epoch_length' must be > 0 seconds, got {epoch_length!r}.")
    n_epochs = int(n_epochs)
    L = epoch_length
    if abs(hyp.epoch_length - L) > 1e-9:
        # Every other comparison would be in the wrong unit: this one problem says it all.
        return [f"The hypnogram uses {hyp.epoch_length:g} s epochs but the recording is "
                f"scored in {L:g} s epochs."]
    first = offset_epochs(hyp, L)
    if first is None:
        return [f"The hypnogram starts {hyp.start:g} s from the recording start, which is "
                f"not a whole number of {L:g} s epochs, so its epochs do not line up with "
                f"the recording's."]
    e = _extent(hyp, n_epochs, first)
    problems = []
    if e["before"]:
        problems.append(f"The hypnogram starts {e['before']} epoch(s) ({e['before'] * L:g} s) "
                        f"before the recording; "
                        f"{_scored_words(e['before_scored'])}.")
    if e["missing_front"]:
        problems.append(f"The hypnogram starts {e['missing_front']} epoch(s) "
                        f"({e['missing_front'] * L:g} s) after the recording start; those "
                        f"epochs have no stage.")
    if e["after"]:
        problems.append(f"The hypnogram has {e['after']} more epoch(s) than the recording "
                        f"holds ({n_epochs} epochs); "
                        f"{_scored_words(e['after_scored'])}.")
    if e["missing_end"]:
        problems.append(f"The hypnogram is {e['missing_end']} epoch(s) short: the last "
                        f"{e['missing_end']} of the recording's {n_epochs} epochs "
                        f"({e['missing_end'] * L:g} s) have no stage.")
    return problems


def fit_to_recording(hyp: Hypnogram, n_epochs: int, policy: str,
                     epoch_length: float | None = None) -> Hypnogram:
    """A copy of ``hyp`` with exactly ``n_epochs`` epochs starting at the recording start.

    Parameters
    ----------
    hyp : Hypnogram
        The imported hypnogram.
    n_epochs : int
        Number of epochs in the recording.
    policy : {'crop', 'pad', 'crop_or_pad'}
        ``'crop'`` removes epochs outside the recording, ``'pad'`` adds unscored epochs
        where the hypnogram does not cover it, ``'crop_or_pad'`` does both. Extra epochs
        that are all unscored are dropped under every policy.
    epoch_length : float or None
        The recording's epoch length; ``None`` assumes the hypnogram's.

    Returns
    -------
    Hypnogram
        Starting at 0 s, ``n_epochs`` long; labels, provenance and probabilities kept.

    Raises
    ------
    HypnogramMismatchError
        Epoch lengths differ, the start is off the epoch grid, or the policy does not
        allow what is needed (cropping scored epochs under 'pad', padding under 'crop').
    """
    check_option("policy", policy, FIT_POLICIES)
    L = hyp.epoch_length if epoch_length is None else epoch_length
    problems = check_fit(hyp, n_epochs, L)
    first = offset_epochs(hyp, L)
    if abs(hyp.epoch_length - L) > 1e-9 or first is None:
        raise HypnogramMismatchError("The hypnogram cannot be fitted to the recording by "
                                     "cropping or padding.", problems)
    e = _extent(hyp, int(n_epochs), first)
    if policy == "pad" and (e["before_scored"] or e["after_scored"]):
        raise HypnogramMismatchError("The hypnogram has scored epochs outside the recording; "
                                     "padding cannot fix that, cropping would drop them.",
                                     problems)
    if policy == "crop" and (e["missing_front"] or e["missing_end"]):
        raise HypnogramMismatchError("The hypnogram does not cover the whole recording; "
                                     "cropping cannot fix that, padding with unscored epochs "
                                     "would.", problems)
    return window(hyp, -first, int(n_epochs) - first, 0.0)
