"""Luna's annotation files: ``.eannot`` (one stage per epoch) and ``.annot`` (a table).

`Luna <https://zzz.bwh.harvard.edu/luna/>`_ (``lunapi``, Lunascope, the NSRR tools) attaches
these to the recording's own EDF (``inst.attach_annot``) and its ``HYPNO`` command then
reports the night's statistics. Stages use Luna's names: ``W N1 N2 N3 R`` and ``?`` for an
epoch without a stage.

* ``.eannot``: one line per 30-s epoch from the start of the EDF, nothing else. Luna
  refuses it when its line count differs from the EDF's epoch count by more than a few, and
  for a discontinuous (EDF+D) recording. Artefact epochs are written ``?`` (Luna has no
  artefact stage), so they read back as unscored.
* ``.annot``: tab-separated ``class instance channel start stop meta`` rows, times in
  seconds from the start of the EDF. One row per epoch; an artefact epoch is class ``?``
  with instance ``ART`` and every row carries ``provenance=...`` in its meta column, so the
  file round-trips exactly. Other annotation classes (arousals, apnoeas, ...) are skipped
  on import with a note.

Luna counts leading and trailing ``?`` epochs as lights-on time outside the time in bed,
while the app counts the whole hypnogram as time in bed: the two agree on TIB, SE and SOL
once the hypnogram runs from lights-off to lights-on.

Luna attaches no EDF+ annotation file, ours or Sleep-EDF's: ``attach_annot`` reads ``.xml``
and ``.ftr`` files and parses anything else as ``.annot`` text ("invalid data line"), which is
why these two formats exist. This module imports neither :mod:`.read` nor :mod:`.write`
(both import it).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from eegvlm_desktop.core.errors import HypnogramError
from eegvlm_desktop.core.hypnogram.hypnogram import PROVENANCES, Hypnogram
from eegvlm_desktop.core.stages import ART, UNS, describe_mapping, to_aasm

__all__ = ["ANNOT_COLUMNS", "LUNA_EPOCH", "LUNA_STAGES", "LunaStages", "annot_bytes",
           "eannot_bytes", "luna_to_aasm", "read_annot", "read_eannot"]

#: App stage -> Luna stage name (Luna has no artefact stage: an artefact epoch is '?').
LUNA_STAGES: dict[str, str] = {"W": "W", "N1": "N1", "N2": "N2", "N3": "N3", "R": "R",
                               UNS: "?", ART: "?"}
#: The header row Luna itself writes (WRITE-ANNOTS) and expects when a header is present.
ANNOT_COLUMNS: tuple[str, ...] = ("class", "instance", "channel", "start", "stop", "meta")
#: Luna's default epoch, the one every ``.eannot`` line stands for.
LUNA_EPOCH = 30.0
#: Luna's epoch codes that are not sleep stages, read as unscored: lights on, unknown,
#: movement.
_LUNA_UNSCORED = {"l": "lights on", "u": "unknown", "m": "movement"}
_TOL = 1e-3
_HMS = re.compile(r"^(\d{1,2})[:.](\d{1,2})[:.](\d{1,2}(?:\.\d*)?)$")


def luna_to_aasm(label: str) -> str | None:
    """Map a Luna stage name (``W N1 N2 N3 N4 R ? L U M``, or any label the app knows)."""
    aasm = to_aasm(label)
    if aasm is None and label.strip().lower() in _LUNA_UNSCORED:
        return UNS
    return aasm


def _num(x: float) -> str:
    return f"{x:.10g}"


# ---------------------------------------------------------------------------- writers
def eannot_bytes(hyp: Hypnogram) -> bytes:
    """The hypnogram as a Luna ``.eannot`` file: one Luna stage name per 30-s epoch.

    Parameters
    ----------
    hyp : Hypnogram
        30-s epochs starting a whole number of epochs after the recording start (the
        leading epochs are written ``?``).

    Returns
    -------
    bytes
        ASCII lines ending in ``\\n`` (Luna drops a last line without one).

    Raises
    ------
    HypnogramError
        Other epochs than 30 s, or a start off Luna's epoch grid.
    """
    if abs(hyp.epoch_length - LUNA_EPOCH) > _TOL:
        raise HypnogramError(
            f"The hypnogram is scored in {hyp.epoch_length:g}-s epochs; a Luna .eannot file "
            f"has one line per {LUNA_EPOCH:g}-s epoch. Save it as a Luna .annot file, which "
            f"stores each epoch's start and stop.")
    k = hyp.start / LUNA_EPOCH
    if k < -1e-9 or abs(k - round(k)) * LUNA_EPOCH > _TOL:
        raise HypnogramError(
            f"The hypnogram starts at {hyp.start:g} s, which a Luna .eannot file (one line "
            f"per {LUNA_EPOCH:g}-s epoch from the recording start) cannot store. Save it as a "
            f"Luna .annot file.")
    labels = ["?"] * int(round(k)) + [LUNA_STAGES[str(s)] for s in hyp.stages]
    return ("\n".join(labels) + "\n").encode("ascii")


def annot_bytes(hyp: Hypnogram) -> bytes:
    """The hypnogram as a Luna ``.annot`` table: one row per epoch, times in seconds.

    Parameters
    ----------
    hyp : Hypnogram
        Any epoch length; it must not start before the recording.

    Returns
    -------
    bytes
        UTF-8 text: Luna's header row, then ``stage . . start stop provenance=...`` rows;
        artefact epochs are class ``?`` with instance ``ART``.

    Raises
    ------
    HypnogramError
        The hypnogram starts before the recording (Luna counts from the EDF start).
    """
    if hyp.start < -_TOL:
        raise HypnogramError(
            f"The hypnogram starts {-hyp.start:g} s before the recording; a Luna .annot file "
            f"counts seconds from the start of the recording. Crop it to the recording first.")
    rows = ["\t".join(ANNOT_COLUMNS)]
    for i in range(hyp.n_epochs):
        stage = str(hyp[i])
        onset = max(hyp.onset(i), 0.0)
        rows.append("\t".join((LUNA_STAGES[stage], "ART" if stage == ART else ".", ".",
                               _num(onset), _num(onset + hyp.epoch_length),
                               f"provenance={hyp.provenance[i]}")))
    return ("\n".join(rows) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------- readers
@dataclass
class LunaStages:
    """What :func:`read_eannot` or :func:`read_annot` found.

    Attributes
    ----------
    events : list of (onset_s, duration_s, AASM label, source label, provenance or None)
        Stage events, for :func:`.fit.build_grid`.
    mapping : list of (str, str)
        Source label -> AASM label.
    notes : list of str
        What the reader did (Luna's lights-on epochs read as unscored, ...).
    skipped : list of str
        Classes of the rows that are not sleep stages (one entry per row).
    """

    events: list[tuple[float, float | None, str, str, str | None]] = field(default_factory=list)
    mapping: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_eannot(text: str, name: str, epoch_length: float) -> LunaStages:
    """Read a Luna ``.eannot`` file: one label per epoch from the recording start.

    Parameters
    ----------
    text : str
        The file's content.
    name : str
        File name, for messages.
    epoch_length : float
        Length of an epoch (Luna's default is 30 s; the file does not say).

    Raises
    ------
    HypnogramError
        The file is empty or has labels that are not sleep stages.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise HypnogramError(f"'{name}' contains no sleep stages.")
    labels = [luna_to_aasm(ln) for ln in lines]
    bad = sorted({ln for ln, lab in zip(lines, labels) if lab is None})
    if bad:
        raise HypnogramError(
            f"'{name}' is not a hypnogram: these lines are not sleep stages: "
            f"{', '.join(map(repr, bad[:5]))} (Luna's stage names are W, N1, N2, N3, R and ?).")
    found = LunaStages(events=[(i * epoch_length, epoch_length, lab, src, None)
                              for i, (lab, src) in enumerate(zip(labels, lines))])
    found.mapping = _mapping(lines)
    _note_lights(found, lines)
    return found


def read_annot(text: str, name: str, recording_start: datetime | None = None,
               recording_duration: float | None = None) -> LunaStages:
    """Read the sleep stages of a Luna ``.annot`` file (other classes are skipped).

    Parameters
    ----------
    text : str
        The file's content: ``#`` class headers, an optional ``class instance ...`` header
        row, then tab-separated rows of 6 (or Luna's older 4 or 3) columns.
    name : str
        File name, for messages.
    recording_start : datetime or None
        Needed only for rows given in clock time (``23:30:02``).
    recording_duration : float or None
        Needed only when the last row ends with ``...`` (until the end of the recording).

    Raises
    ------
    HypnogramError
        A row has the wrong number of columns or a time this reader does not understand.
    """
    found = LunaStages()
    rows: list[tuple[int, list[str]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue  # '#' lines declare classes and their meta-data types
        tok = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        tok = [t.strip() for t in tok]
        if not rows and tok[0].lower() == "class":
            continue  # the optional header row
        if len(tok) == 4:  # Luna's older layout: class instance start stop
            tok = [tok[0], tok[1], ".", tok[2], tok[3], "."]
        elif len(tok) == 3:  # class start stop
            tok = [tok[0], ".", ".", tok[1], tok[2], "."]
        elif len(tok) != 6:
            raise HypnogramError(
                f"'{name}', line {n}: a Luna .annot row has 6 tab-separated columns (class, "
                f"instance, channel, start, stop, meta), but this one has {len(tok)}.")
        rows.append((n, tok))
    if not rows:
        raise HypnogramError(f"'{name}' contains no annotations.")
    start_clock = recording_start.replace(tzinfo=None) if recording_start else None
    sources: list[str] = []
    for k, (n, tok) in enumerate(rows):
        cls, inst, _ch, _start, stop_s, meta = tok
        aasm = luna_to_aasm(cls)
        if aasm is None:
            found.skipped.append(cls)
            continue
        if aasm == UNS and inst.upper() == ART:
            aasm, src = ART, f"{cls}/{inst}"
        else:
            src = cls
        onset = _time(tok[3], name, n, start_clock)
        if onset is None:
            found.skipped.append(cls)  # Luna's whole-recording row ('.' times)
            continue
        if stop_s == "...":
            if k + 1 < len(rows):  # until the next row's start
                stop = _time(rows[k + 1][1][3], name, rows[k + 1][0], start_clock)
            elif recording_duration is not None:
                stop = recording_duration
            else:
                raise HypnogramError(f"'{name}', line {n}: the last row ends with '...' (until "
                                     "the end of the recording); open the recording first.")
        elif stop_s.startswith("+"):
            stop = onset + _float(stop_s[1:], name, n, "stop")
        else:
            stop = _time(stop_s, name, n, start_clock, stop=True)
        if stop is None:
            raise HypnogramError(f"'{name}', line {n}: the stage has a start but no stop time.")
        if stop < onset - _TOL:
            raise HypnogramError(f"'{name}', line {n}: the stop {stop_s!r} is before the start "
                                 f"{tok[3]!r}.")
        found.events.append((onset, stop - onset, aasm, src, _provenance(meta)))
        sources.append(src)
    found.mapping = _mapping(sources)
    _note_lights(found, sources)
    return found


def _mapping(sources: list[str]) -> list[tuple[str, str]]:
    seen = dict(describe_mapping(sources))
    for s in sources:
        if s not in seen:
            aasm = ART if s.upper().endswith("/ART") else luna_to_aasm(s)
            if aasm is not None:
                seen[s] = aasm
    return sorted(seen.items())


def _note_lights(found: LunaStages, labels: list[str]) -> None:
    codes = sorted({lab for lab in labels if lab.strip().lower() in _LUNA_UNSCORED})
    if codes:
        what = ", ".join(f"{c!r} ({_LUNA_UNSCORED[c.strip().lower()]})" for c in codes)
        found.notes.append(f"Luna's {what} epochs were read as unscored.")


def _float(s: str, name: str, n: int, what: str) -> float:
    try:
        value = float(s)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise HypnogramError(f"'{name}', line {n}: the {what} {s!r} is not a number of "
                             "seconds.")
    return value


def _time(s: str, name: str, n: int, start_clock: datetime | None, stop: bool = False
          ) -> float | None:
    """Seconds from the recording start for one of Luna's time forms.

    Elapsed seconds (``120``), elapsed ``0+hh:mm:ss``, clock time ``hh:mm:ss`` (or with
    dots), epochs ``e:N`` / ``e:N:len`` / ``e:N:len:inc`` (1-based; as a stop, the end
    of epoch N), and ``.`` (no time: Luna's whole-recording annotation, returned as None).
    """
    if s == ".":
        return None
    if s.startswith("0+"):
        m = _HMS.match(s[2:])
        if m:
            return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    elif s.lower().startswith("e:"):
        parts = s[2:].split(":")
        try:
            e = int(parts[0])
            length = float(parts[1]) if len(parts) > 1 else LUNA_EPOCH
            inc = float(parts[2]) if len(parts) > 2 else length
        except (ValueError, IndexError):
            e = 0
        if e >= 1 and len(parts) <= 3:
            return (e - 1) * inc + (length if stop else 0.0)
    else:
        m = _HMS.match(s)
        if m:
            if start_clock is None:
                raise HypnogramError(
                    f"'{name}', line {n}: {s!r} is a clock time; import the file into an open "
                    "recording, whose start time it is counted from.")
            clock = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
            t0 = start_clock.hour * 3600 + start_clock.minute * 60 + start_clock.second \
                + start_clock.microsecond / 1e6
            return (clock - t0) % 86400.0  # a night crosses midnight
        try:
            value = float(s)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value
    raise HypnogramError(
        f"'{name}', line {n}: the time {s!r} is not one this app reads from a Luna .annot "
        f"file (seconds such as 120.5, 0+hh:mm:ss, hh:mm:ss or e:N).")


def _provenance(meta: str) -> str | None:
    for item in re.split(r"[|;]", meta):
        key, _, value = item.partition("=")
        if key.strip() == "provenance" and value.strip() in PROVENANCES:
            return value.strip()
    return None
