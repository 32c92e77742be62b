"""Is a recording's signal sane? Checked once on open, and the user is told what is not.

A file can open without any error and still hold nothing a scorer (or the model) can use:

* a **flat** channel (an electrode that was never connected, a channel filled with zeros);
* a header whose **physical minimum equals its maximum**, so every sample reads as one value;
* EEG at a **tiny scale**: volts stored in a channel labelled µV (the numbers are a million
  times too small: an RMS far below 0.5 µV over the night, where scalp EEG is 5 to 100 µV);
* **clipped** channels: a large share of samples sit at the edge of the recorded range,
  where the amplifier or the file's range cut the waveform off.

:func:`check_signal_quality` reads a sample of the night (evenly spread 30-s windows, so a
multi-GB PSG is checked in well under a second) and returns one :class:`SignalIssue` per
problem, each naming the channel and the numbers behind the verdict, and ``unusable`` when
the channel cannot be trusted at all. Callers show them: the GUI's banner, ``eegvlm info``,
and ``eegvlm stage``'s ``notes`` (:func:`recording_notes`).

This is the whole-recording check. Which *epochs* get no stage is decided per epoch by the
stagers' gate, :mod:`eegvlm_desktop.core.staging.quality_gate`, with the same limits for EEG
(0.5 µV RMS, 20 % of samples on a rail).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Channel types whose samples are body potentials in µV and are checked.
CHECKED_TYPES = ("eeg", "eog", "emg", "ecg")
#: EEG with a root-mean-square amplitude below this over the sampled night is not real EEG.
EEG_MIN_RMS_UV = 0.5
#: Other body potentials below this are a million-fold scale error too (Sleep-EDF's chin
#: EMG envelope, the quietest real channel seen, has an RMS near 1 µV).
OTHER_MIN_RMS_UV = 0.01
#: A channel with at least this share of samples at its range's edge is reported clipped...
CLIPPED_WARN = 0.01
#: ...and with at least this share it is unusable (most of the waveform is cut off).
CLIPPED_UNUSABLE = 0.20
#: How much of the night is read: this many windows of WINDOW_S seconds, evenly spread.
N_WINDOWS = 24
WINDOW_S = 30.0


@dataclass(frozen=True)
class SignalIssue:
    """One problem found in one channel.

    Attributes
    ----------
    channel : str
        The channel's name.
    index : int
        Its index in the recording's channel lists.
    ch_type : str
        Its type (``'eeg'``, ``'eog'`` ...).
    kind : str
        ``'flat'``, ``'no_range'`` (physical min = max), ``'tiny'`` or ``'clipped'``.
    unusable : bool
        Whether the channel carries no trustworthy signal at all.
    message : str
        What is wrong and what it means, for the user.
    """

    channel: str
    index: int
    ch_type: str
    kind: str
    unusable: bool
    message: str

    def __str__(self) -> str:
        return self.message


def _windows(n_times: int, sfreq: float) -> list[tuple[int, int]]:
    """Up to N_WINDOWS windows of WINDOW_S seconds, evenly spread (or the whole file)."""
    win = int(min(max(1, round(WINDOW_S * sfreq)), n_times))
    k = max(1, min(N_WINDOWS, n_times // win))
    starts = np.linspace(0, n_times - win, k).astype(int)
    return [(int(s), int(s) + win) for s in starts]


def _label(rec: Any, i: int) -> str:
    return f"Channel '{rec.ch_names[i]}' ({rec.ch_types[i].upper()})"


def check_signal_quality(recording: Any) -> list[SignalIssue]:
    """Check every EEG/EOG/EMG/ECG channel of ``recording`` for flat, tiny or clipped signal.

    Parameters
    ----------
    recording : Recording
        An opened recording (see
        :func:`~eegvlm_desktop.core.recording.recording.read_recording`); only its metadata,
        :meth:`get_data`, :meth:`physical_range` and :meth:`resolution` are used.

    Returns
    -------
    list of SignalIssue
        In channel order; empty when nothing is wrong. At most one issue per channel (the
        most severe: no range, then flat, then tiny, then clipped).
    """
    idx = [i for i, t in enumerate(recording.ch_types) if t in CHECKED_TYPES]
    if not idx or recording.n_times == 0:
        return []
    spans = _windows(recording.n_times, recording.sfreq)
    # One window in memory at a time, read twice (the clipping count needs each channel's
    # extremes first): the check runs beside the first page on the app's job thread, and
    # holding the whole sample (~15 MB for 10 channels at 256 Hz) lifted the viewer's peak.
    lo, hi = np.full(len(idx), np.inf), np.full(len(idx), -np.inf)
    squares, n = np.zeros(len(idx)), 0
    for s0, s1 in spans:
        c = recording.get_data(idx, s0, s1)
        n += c.shape[1]
        # RMS about each window's own mean: a DC offset (common in DC-coupled EOG) is not
        # signal, and a slow drift must not pass for EEG.
        squares = squares + np.sum((c - c.mean(axis=1, keepdims=True)) ** 2, axis=1)
        lo, hi = np.minimum(lo, c.min(axis=1)), np.maximum(hi, c.max(axis=1))
    rms = np.sqrt(squares / n)
    seconds = n / recording.sfreq
    sampled = ("the whole recording" if n >= recording.n_times else
               f"{seconds / 60:.0f} min sampled across the night")
    found = {row: _check_level(recording, i, float(lo[row]), float(hi[row]), float(rms[row]),
                               sampled) for row, i in enumerate(idx)}
    rest = [row for row, issue in found.items() if issue is None]
    if rest:
        # Clipping shows as plateaus at the extreme values, wherever the cut happened (the
        # amplifier's input range or the file's): in real EEG the extremes are single
        # samples. Half a stored step of tolerance, so values rounded onto a plateau count.
        tol = np.array([max((hi[r] - lo[r]) * 1e-9, recording.resolution(idx[r]) / 2)
                        for r in rest])
        at_edge = np.zeros(len(rest), dtype=np.int64)
        for s0, s1 in spans:
            c = recording.get_data([idx[r] for r in rest], s0, s1)
            at_edge += np.count_nonzero((c <= (lo[rest] + tol)[:, None])
                                        | (c >= (hi[rest] - tol)[:, None]), axis=1)
        for k, row in enumerate(rest):
            found[row] = _check_clipping(recording, idx[row], float(lo[row]), float(hi[row]),
                                         float(at_edge[k]) / n, sampled)
    return [found[row] for row in range(len(idx)) if found[row] is not None]


def _check_level(rec: Any, i: int, lo: float, hi: float, rms: float,
                 sampled: str) -> SignalIssue | None:
    """No range, flat or tiny: what the channel's extremes and RMS alone tell."""
    name, kind_of = rec.ch_names[i], rec.ch_types[i]
    label = _label(rec, i)
    rng = rec.physical_range(i)
    if rng is not None and rng[0] == rng[1]:
        return SignalIssue(name, i, kind_of, "no_range", True,
                           f"{label}: the file's header gives it the same physical minimum and "
                           f"maximum ({rng[0]:g} µV), so every sample reads as that one value. "
                           f"It holds no usable signal.")
    if hi == lo:
        return SignalIssue(name, i, kind_of, "flat", True,
                           f"{label} is flat: every sample is {lo:.3g} µV ({sampled}). The "
                           f"electrode was probably not connected; the channel holds no signal.")
    floor = EEG_MIN_RMS_UV if kind_of == "eeg" else OTHER_MIN_RMS_UV
    if rms < floor:
        return SignalIssue(name, i, kind_of, "tiny", True,
                           f"{label} is implausibly small: its RMS amplitude is {rms:.3g} µV "
                           f"({sampled}), where real {kind_of.upper()} is at least "
                           f"{floor:g} µV. The file probably stores volts in a channel labelled "
                           f"µV; export it again with the right unit.")
    return None


def _check_clipping(rec: Any, i: int, lo: float, hi: float, at_edge: float,
                    sampled: str) -> SignalIssue | None:
    """Clipped: ``at_edge`` of the sampled values sit at the channel's extremes."""
    if at_edge < CLIPPED_WARN:
        return None
    unusable = at_edge >= CLIPPED_UNUSABLE
    return SignalIssue(rec.ch_names[i], i, rec.ch_types[i], "clipped", unusable,
                       f"{_label(rec, i)} is clipped: {at_edge:.0%} of its samples ({sampled}) "
                       f"sit at its extreme values ({lo:.4g} or {hi:.4g} µV), where the "
                       f"waveform was cut off."
                       + (" Most of it is lost; it cannot be trusted." if unusable else
                          " Its largest waves read too small there."))


def recording_notes(recording: Any, issues: list[SignalIssue] | None = None) -> list[str]:
    """Everything the user should be told about a recording when it is opened, in order.

    The unit corrections made while reading it, the reader's (MNE's) own warnings, then the
    signal problems (``issues``, or :func:`check_signal_quality` run now). The GUI and
    ``eegvlm stage`` show the same list, so neither says less than ``eegvlm info``.
    """
    if issues is None:
        issues = check_signal_quality(recording)
    return (list(getattr(recording, "unit_notes", [])) + list(getattr(recording, "notes", []))
            + [str(q) for q in issues])


__all__ = ["SignalIssue", "check_signal_quality", "recording_notes", "EEG_MIN_RMS_UV",
           "CLIPPED_WARN", "CLIPPED_UNUSABLE"]
