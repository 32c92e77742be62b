"""Read hypnograms from the files sleep labs exchange, and fit them to a recording.

Readers turn every format into one intermediate form, a list of stage *events*
``(onset_s, duration_s, AASM label, source label, provenance)``; ``build_grid`` then lays
them on the epoch grid (gaps become unscored, overlaps are refused), so all formats share
the same checks and the same messages. Nothing is resampled silently: a file scored
in other epochs than expected raises :class:`HypnogramMismatchError`.

Writers live in :mod:`.write`, fitting to a recording in :mod:`.fit`, the NSRR and
Compumedics Profusion XML readers in :mod:`.xml_formats`, Luna's .eannot and .annot in
:mod:`.luna_formats`.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eegvlm_desktop.core.errors import HypnogramError, check_option
from eegvlm_desktop.core.hypnogram.fit import (build_grid, check_implicit_epochs,
                                               drop_unscored_outside, epoch_mismatch)
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.luna_formats import read_annot, read_eannot
from eegvlm_desktop.core.hypnogram.xml_formats import read_xml
from eegvlm_desktop.core.stages import UNS, YASA_INT_INV, describe_mapping, to_aasm

__all__ = ["ImportResult", "READ_FORMATS", "read_hypnogram"]

READ_FORMATS: tuple[str, ...] = ("edf", "csv", "tsv", "yasa-txt", "xml", "json", "eannot",
                                 "annot")
_TOL = 1e-3  # s: onsets in text files are often rounded to the millisecond
_MAX_BYTES = 64 * 2**20  # a hypnogram is a few kB; refuse to slurp a mis-picked 1 GB file
_STAGE_COLUMNS = ("stage", "sleep_stage", "trial_type", "description", "label")


@dataclass
class ImportResult:
    """A hypnogram read from a file, with what was done to it for the user to review.

    Attributes
    ----------
    hypnogram : Hypnogram
        The stages on the epoch grid (``start`` in seconds from the recording start).
    fmt : str
        The format read, one of :data:`READ_FORMATS`.
    mapping : list of (str, str)
        Source label -> AASM label, e.g. ``('Sleep stage 4', 'N3')``.
    notes : list of str
        Things done to the file's content (dropped epochs, shifted onsets, ...).
    """

    hypnogram: Hypnogram
    fmt: str
    mapping: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Parsed:
    """What a reader found: events (or a ready hypnogram for our JSON) plus context."""

    fmt: str
    events: list[tuple[float, float | None, str, str, str | None]] = field(default_factory=list)
    hypnogram: Hypnogram | None = None
    mapping: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    file_start: datetime | None = None
    file_epoch_length: float | None = None


def read_hypnogram(path: str | Path, *, fmt: str | None = None, epoch_length: float = 30.0,
                   recording_start: datetime | None = None,
                   recording_duration: float | None = None) -> ImportResult:
    """Read a hypnogram file and map its labels to AASM stages.

    Parameters
    ----------
    path : str or Path
        The hypnogram file.
    fmt : str or None
        One of :data:`READ_FORMATS`; ``None`` detects it from the extension and content.
    epoch_length : float
        Epoch length of the recording, in seconds. Files scored in other epochs raise.
    recording_start : datetime or None
        Start of the recording. When the file has its own start time (EDF+, our JSON),
        onsets are shifted by the difference; clock times in a Luna .annot are counted from
        it. Time zones are ignored: EDF stores clock time.
    recording_duration : float or None
        Length of the recording in seconds. Unscored epochs past its end (or before its
        start) are dropped with a note; scored ones are kept for the user to decide. A Luna
        .annot row ending in '...' runs to it.

    Returns
    -------
    ImportResult

    Raises
    ------
    HypnogramError
        The file is missing, unreadable, empty, not a hypnogram, or has overlapping stages.
    HypnogramMismatchError
        The file is scored in epochs of another length than ``epoch_length``.
    """
    path = Path(path)
    if fmt is not None:
        check_option("fmt", fmt, READ_FORMATS)
    if not epoch_length > 0:
        raise ValueError(f"'epoch_length' must be > 0 seconds, got {epoch_length!r}.")
    if recording_duration is not None and not recording_duration >= 0:
        raise ValueError(f"'recording_duration' must be >= 0 seconds, got {recording_duration!r}.")
    name = path.name
    try:
        with path.open("rb") as f:
            head = f.read(4096)
        size = path.stat().st_size
    except OSError as err:
        raise HypnogramError(f"Could not open the hypnogram '{path}': "
                             f"{err.strerror or err}.") from err
    if size == 0:
        raise HypnogramError(f"The hypnogram file '{name}' is empty.")
    fmt = fmt or _detect(path, head)
    if fmt == "edf":
        parsed = _read_edf(path, head)
    else:
        if size > _MAX_BYTES:
            raise HypnogramError(f"'{name}' is {size / 2**20:.0f} MiB, too large for a "
                                 f"{fmt} hypnogram; is it the right file?")
        data = path.read_bytes()
        if fmt == "xml":
            parsed = _read_xml(data, name)
        elif fmt == "json":
            parsed = _read_json(data, name)
        else:
            text = _decode(data)
            if fmt in ("csv", "tsv"):
                parsed = _read_table(text, name, fmt, epoch_length, recording_duration)
            elif fmt in ("eannot", "annot"):
                parsed = _read_luna(text, name, fmt, epoch_length, recording_start,
                                    recording_duration)
            else:
                parsed = _read_lines(text, name, epoch_length, recording_duration)
    return _finish(parsed, name, epoch_length, recording_start, recording_duration)


# ---------------------------------------------------------------------------- detection
def _detect(path: Path, head: bytes) -> str:
    """Pick the format from strong content signatures first, then the extension."""
    ext = path.suffix.lower()
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if _is_edf(head):
        return "edf"
    if ext in (".edf", ".bdf", ".rec"):
        raise HypnogramError(f"'{path.name}' has an {ext} extension but is not an EDF file "
                             f"(its header does not start like one).")
    if ext in (".eannot", ".annot"):
        return ext[1:]
    if text.startswith(b"<"):
        return "xml"
    if text.startswith(b"{"):
        return "json"
    if b"\x00" in head:
        raise HypnogramError(f"'{path.name}' is a binary file, not a hypnogram this app can "
                             f"read ({', '.join(READ_FORMATS)}).")
    first = head.decode("utf-8", "replace").lstrip("\ufeff").strip().splitlines()
    first_line = first[0] if first else ""
    if _is_luna_annot(first):
        return "annot"
    cols = {c.strip().strip('"').lower() for c in re.split(r"[,;\t]", first_line)}
    if cols & set(_STAGE_COLUMNS) or (ext in (".csv", ".tsv") and len(cols) > 1):
        # A table (the header names a stage column, or a .csv/.tsv with several columns:
        # the table reader then says which column is missing).
        return "tsv" if "\t" in first_line else "csv"
    return "yasa-txt"


def _is_luna_annot(lines: list[str]) -> bool:
    """Luna's .annot under another name (Luna reads .txt and .tsv as .annot too): its
    ``class instance ...`` header row, or its ``# class | description`` lines."""
    headed = False
    for line in lines:
        if line.startswith("#"):
            if "|" not in line:
                return False  # a plain comment (YASA text and tables allow them)
            headed = True
            continue
        return headed or re.match(r"class\s+instance\s", line, re.IGNORECASE) is not None
    return headed


def _is_edf(head: bytes) -> bool:
    return len(head) >= 256 and head[:8] == b"0       " and head[168:169].isdigit()


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Lab software on Windows often writes cp1252/latin-1; labels are ASCII anyway.
        return data.decode("latin-1")


# ---------------------------------------------------------------------------- readers
def _read_edf(path: Path, head: bytes) -> _Parsed:
    import mne

    name = path.name
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = path
        if path.suffix.lower() not in (".edf", ".bdf"):
            # mne picks its reader from the extension; give it one it knows.
            src = Path(tmp) / "annotations.edf"
            shutil.copyfile(path, src)
        try:
            ann = mne.read_annotations(src)
        except Exception as err:  # mne raises many types on corrupt headers; all mean "bad file"
            raise HypnogramError(f"'{name}' could not be read as EDF+ annotations: {err}") from err
    # MNE's remarks (e.g. odd header fields) go to the user as notes rather than leaking.
    parsed = _Parsed("edf", notes=[f"MNE: {w.message}" for w in caught],
                     file_start=_edf_start(head))
    skipped: list[str] = []
    for onset, dur, desc in zip(ann.onset, ann.duration, ann.description):
        aasm = to_aasm(desc)
        if aasm is None:
            skipped.append(str(desc))
            continue
        parsed.events.append((float(onset), float(dur), aasm, str(desc), None))
    parsed.mapping = describe_mapping([e[3] for e in parsed.events])
    _note_skipped(parsed, skipped, "annotation")
    return parsed


def _edf_start(head: bytes) -> datetime | None:
    """Start date/time from an EDF header; ``None`` when absent or anonymised."""
    try:
        rec = head[88:168].decode("ascii", "replace")
        dd, mm, yy = (int(x) for x in head[168:176].decode("ascii").strip().split("."))
        hh, mi, ss = (int(x) for x in head[176:184].decode("ascii").strip().split("."))
    except (ValueError, UnicodeDecodeError):
        return None
    year = 1900 + yy if yy >= 85 else 2000 + yy  # EDF's two-digit year clipping rule
    m = re.match(r"Startdate\s+(\S+)", rec)
    if m:
        if m.group(1).upper() == "X":  # EDF+: start date deliberately anonymised
            return None
        y4 = re.search(r"-(\d{4})$", m.group(1))
        year = int(y4.group(1)) if y4 else year  # the 4-digit year is valid beyond 2084
    try:
        return datetime(year, mm, dd, hh, mi, ss)
    except ValueError:
        return None


def _read_table(text: str, name: str, fmt: str, epoch_length: float,
                recording_duration: float | None) -> _Parsed:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise HypnogramError(f"The hypnogram file '{name}' is empty.")
    try:
        delim = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t").delimiter
    except csv.Error:  # a single column has no delimiter to find
        delim = "\t" if fmt == "tsv" else ","
    rows = list(csv.reader(lines, delimiter=delim))
    header = [h.strip().lower() for h in rows[0]]
    col = {h: i for i, h in enumerate(header)}
    stage_col = next((c for c in _STAGE_COLUMNS if c in col), None)
    if stage_col is None:
        raise HypnogramError(
            f"'{name}' has no stage column: found columns {', '.join(map(repr, rows[0]))}; "
            f"expected 'onset', 'duration' and one of {', '.join(map(repr, _STAGE_COLUMNS))}.")
    si, oi, di, pi = col[stage_col], col.get("onset"), col.get("duration"), col.get("provenance")
    parsed = _Parsed("tsv" if delim == "\t" else "csv")
    skipped, unknown = [], []

    def cell(row: list[str], i: int | None) -> str:
        return row[i].strip() if i is not None and i < len(row) else ""

    def number(row: list[str], i: int | None, what: str, line: int) -> float | None:
        v = cell(row, i)
        if v in ("", "n/a", "NaN", "nan"):
            return None
        try:
            return float(v)
        except ValueError:
            raise HypnogramError(f"'{name}', line {line}: {what} {v!r} is not a number.") from None

    for n, row in enumerate(rows[1:], start=2):
        label = cell(row, si)
        aasm = to_aasm(label)
        if aasm is None:
            (skipped if oi is not None else unknown).append(label)
            continue
        onset = number(row, oi, "onset", n) if oi is not None else None
        if oi is not None and onset is None:
            raise HypnogramError(f"'{name}', line {n}: the onset is empty.")
        if onset is None:  # one row per epoch
            onset = len(parsed.events) * epoch_length
        prov = cell(row, pi) or None
        parsed.events.append((onset, number(row, di, "duration", n), aasm, label, prov))
    if unknown:  # with one row per epoch, skipping a row would shift every later epoch
        raise HypnogramError(f"'{name}' has labels that are not sleep stages: "
                             f"{', '.join(map(repr, sorted(set(unknown))[:5]))}.")
    if oi is None:
        check_implicit_epochs(len(parsed.events), name, epoch_length, recording_duration)
    parsed.mapping = describe_mapping([e[3] for e in parsed.events])
    _note_skipped(parsed, skipped, "row")
    return parsed


def _read_lines(text: str, name: str, epoch_length: float,
                recording_duration: float | None) -> _Parsed:
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines and lines[0].startswith("[") and lines[0].endswith("]"):
        lines = lines[1:]  # DREAMS-style '[Hypnogram]' header
    if not lines:
        raise HypnogramError(f"'{name}' contains no sleep stages.")
    # Check the length before the codes: a DREAMS file's real problem is its 5-s epochs.
    check_implicit_epochs(len(lines), name, epoch_length, recording_duration)
    codes = [_as_int(ln) for ln in lines]
    parsed = _Parsed("yasa-txt")
    if all(c is not None for c in codes):
        bad = sorted({c for c in codes if c not in YASA_INT_INV})
        if bad:
            raise HypnogramError(
                f"'{name}' has integer codes {', '.join(map(str, bad[:5]))} that are not YASA "
                f"stage codes (0 W, 1 N1, 2 N2, 3 N3, 4 R, -1 ART, -2 UNS).")
        labels = [YASA_INT_INV[c] for c in codes]
        parsed.mapping = sorted({(str(c), YASA_INT_INV[c]) for c in codes})
        parsed.notes.append("Integer codes were read with YASA's convention "
                            "(0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 artefact, -2 unscored).")
    else:
        labels = [to_aasm(ln) for ln in lines]
        bad = sorted({ln for ln, lab in zip(lines, labels) if lab is None})
        if bad:
            raise HypnogramError(f"'{name}' is not a hypnogram: these lines are not sleep "
                                 f"stages: {', '.join(map(repr, bad[:5]))}.")
        parsed.mapping = describe_mapping(lines)
    parsed.events = [(i * epoch_length, epoch_length, lab, src, None)
                     for i, (lab, src) in enumerate(zip(labels, lines))]
    return parsed


def _as_int(s: str) -> int | None:
    try:
        v = float(s)  # np.savetxt writes codes as '3.000000000000000000e+00'
    except ValueError:
        return None
    return int(v) if v.is_integer() else None


def _read_luna(text: str, name: str, fmt: str, epoch_length: float,
               recording_start: datetime | None, recording_duration: float | None) -> _Parsed:
    """Luna's .eannot or .annot (see :mod:`.luna_formats`)."""
    if fmt == "eannot":
        found = read_eannot(text, name, epoch_length)
        check_implicit_epochs(len(found.events), name, epoch_length, recording_duration)
    else:
        found = read_annot(text, name, recording_start, recording_duration)
    parsed = _Parsed(fmt, events=found.events, mapping=found.mapping, notes=found.notes)
    _note_skipped(parsed, found.skipped, "annotation")
    return parsed


def _read_xml(data: bytes, name: str) -> _Parsed:
    """NSRR or Compumedics Profusion XML (see :mod:`.xml_formats`)."""
    found = read_xml(data, name)
    parsed = _Parsed("xml", events=found.events, mapping=found.mapping,
                     file_epoch_length=found.epoch_length)
    _note_skipped(parsed, found.skipped, "stage event")
    parsed.notes.extend(found.notes)
    return parsed


def _read_json(data: bytes, name: str) -> _Parsed:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HypnogramError(f"'{name}' is not valid JSON: {err}.") from err
    if isinstance(doc, dict) and doc.get("format") == "eegvlm-hypnogram":
        if doc.get("version") != 1:
            raise HypnogramError(f"'{name}' is hypnogram format version {doc.get('version')!r}; "
                                 f"this app reads version 1. Update the app to open it.")
        body, meas = doc.get("hypnogram"), doc.get("meas_date")
    elif isinstance(doc, dict) and "stages" in doc:  # a bare Hypnogram.to_dict()
        body, meas = doc, None
    else:
        raise HypnogramError(f"'{name}' is JSON but not an EEG-VLM hypnogram.")
    try:
        hyp = Hypnogram.from_dict(body)
        start = datetime.fromisoformat(meas) if meas else None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise HypnogramError(f"'{name}' is a damaged EEG-VLM hypnogram: {err}") from err
    if hyp.n_epochs == 0:
        raise HypnogramError(f"'{name}' contains no sleep stages.")
    return _Parsed("json", hypnogram=hyp, file_start=start, file_epoch_length=hyp.epoch_length,
                   mapping=[(s, s) for s in sorted(set(map(str, hyp.stages)))])


def _note_skipped(parsed: _Parsed, skipped: list[str], what: str) -> None:
    if skipped:
        kinds = ", ".join(map(repr, sorted(set(skipped))[:5]))
        parsed.notes.append(f"{len(skipped)} {what}(s) that are not sleep stages were "
                            f"ignored ({kinds}).")


# ---------------------------------------------------------------------------- assembly
def _finish(p: _Parsed, name: str, epoch_length: float, recording_start: datetime | None,
            recording_duration: float | None) -> ImportResult:
    if p.file_epoch_length is not None and abs(p.file_epoch_length - epoch_length) > _TOL:
        raise epoch_mismatch(name, p.file_epoch_length, epoch_length)
    shift = 0.0
    if recording_start is not None and p.file_start is not None:
        # EDF stores wall-clock time without a zone; compare clock times on both sides.
        shift = (p.file_start.replace(tzinfo=None)
                 - recording_start.replace(tzinfo=None)).total_seconds()
        if shift:
            p.notes.append(f"The hypnogram file starts {abs(shift):g} s "
                           f"{'after' if shift > 0 else 'before'} the recording; its onsets "
                           f"were shifted by {shift:+g} s.")
    if p.hypnogram is not None:
        h = p.hypnogram
        hyp = Hypnogram(list(h.stages), h.epoch_length, h.start + shift, h.scorer, h.proba,
                        list(h.provenance))
    else:
        if not p.events or all(e[2] == UNS for e in p.events):
            only = " (only unscored epochs)" if p.events else ""
            raise HypnogramError(f"'{name}' contains no sleep stages{only}.")
        stages, prov, start = build_grid(p.events, name, epoch_length, p.notes)
        start += shift
        k = round(start / epoch_length)
        if abs(start - k * epoch_length) <= _TOL:  # ms-rounded onsets: snap onto the grid
            start = k * epoch_length
        hyp = Hypnogram(stages, epoch_length, float(start), name, provenance=prov)
    if recording_duration is not None:
        hyp = drop_unscored_outside(hyp, recording_duration, p.notes)
    return ImportResult(hyp, p.fmt, p.mapping, p.notes)
