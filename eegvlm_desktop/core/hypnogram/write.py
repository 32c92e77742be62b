"""Write hypnograms in the formats other sleep tools read, atomically.

Every writer has a matching reader in :mod:`.read`, and the tests round-trip
each one. Files are written whole to a temp file and renamed over the target
(:func:`.atomic.atomic_write_bytes`), so a crash never leaves a half-written hypnogram.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

from eegvlm_desktop.core.atomic import atomic_write_bytes
from eegvlm_desktop.core.errors import HypnogramError, check_option
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.luna_formats import annot_bytes, eannot_bytes
from eegvlm_desktop.core.stages import ALL_LABELS, UNS, YASA_INT

#: Formats :func:`write_hypnogram` can write.
WRITE_FORMATS: tuple[str, ...] = ("csv", "tsv", "edf", "bids", "json", "yasa-txt", "eannot",
                                  "annot")

#: EDF+ annotation texts, in the Sleep-EDF style that EDFbrowser and MNE users recognise.
EDF_LABELS: dict[str, str] = {
    "W": "Sleep stage W", "N1": "Sleep stage N1", "N2": "Sleep stage N2",
    "N3": "Sleep stage N3", "R": "Sleep stage R", UNS: "Sleep stage ?", "ART": "Artefact",
}
_LONG_NAMES = {"W": "Wake", "N1": "N1 sleep", "N2": "N2 sleep", "N3": "N3 sleep",
               "R": "REM sleep", "ART": "Artefact", UNS: "Unscored"}


def write_hypnogram(hyp: Hypnogram, path: str | Path, *, fmt: str | None = None,
                    meas_date: datetime | None = None,
                    provenance: dict | None = None, patient: str | None = None) -> Path:
    """Write ``hyp`` to ``path``.

    Parameters
    ----------
    hyp : Hypnogram
        The hypnogram; it must have at least one epoch.
    path : str or Path
        Target file. Its folder must exist; an existing file is replaced atomically.
    fmt : str or None
        One of :data:`WRITE_FORMATS`. ``None`` picks it from the file name:
        ``*_events.tsv`` -> 'bids', ``.csv``, ``.tsv``, ``.edf``, ``.json``, ``.txt`` ->
        'yasa-txt', and Luna's ``.eannot`` and ``.annot`` (see :mod:`.luna_formats`; the
        'edf' file is not one Luna attaches).
    meas_date : datetime or None
        Recording start: stored as the EDF start date/time and in the JSON document.
    provenance : dict or None
        Free-form, JSON-serialisable description of where the labels come from (app
        version, model, scorer); stored in the JSON document and the BIDS sidecar.
    patient : str or None
        The EDF header's patient field, kept verbatim (an identified export of an EDF
        recording); ``None`` writes EDF+'s anonymous ``"X X X X"``. Only 'edf' has one.

    Returns
    -------
    Path
        The file written (for 'bids', the ``.tsv``; its ``.json`` sidecar sits next to it).

    Raises
    ------
    HypnogramError
        The format cannot be told from the name, the hypnogram is empty or cannot be
        represented in the format, or the file cannot be written.
    """
    path = Path(path)
    if fmt is None:
        fmt = format_from_name(path)
    check_option("fmt", fmt, WRITE_FORMATS)
    if hyp.n_epochs == 0:
        raise HypnogramError(f"The hypnogram has no epochs; nothing was written to '{path.name}'.")
    if provenance is not None and not isinstance(provenance, dict):
        raise TypeError(f"'provenance' must be a dict or None, got {type(provenance).__name__}.")
    try:
        if fmt in ("csv", "tsv"):
            atomic_write_bytes(path, _table(hyp, "," if fmt == "csv" else "\t"))
        elif fmt == "bids":
            atomic_write_bytes(path, _bids_tsv(hyp))
            atomic_write_bytes(path.with_suffix(".json"), _bids_sidecar(hyp, provenance))
        elif fmt == "edf":
            atomic_write_bytes(path, _edf(hyp, meas_date, patient))
        elif fmt == "json":
            atomic_write_bytes(path, _json(hyp, meas_date, provenance))
        elif fmt == "eannot":  # Luna's formats (see luna_formats)
            atomic_write_bytes(path, eannot_bytes(hyp))
        elif fmt == "annot":
            atomic_write_bytes(path, annot_bytes(hyp))
        else:
            atomic_write_bytes(path, _yasa_txt(hyp))
    except OSError as err:
        raise HypnogramError(f"Could not write the hypnogram to '{path}': "
                             f"{err.strerror or err}.") from err
    return path


def format_from_name(path: Path) -> str:
    """The write format a file name implies (``x_events.tsv`` -> bids, ``.edf`` -> edf ...)."""
    name = path.name.lower()
    if name.endswith("_events.tsv"):
        return "bids"
    by_ext = {".csv": "csv", ".tsv": "tsv", ".edf": "edf", ".json": "json", ".txt": "yasa-txt",
              ".eannot": "eannot", ".annot": "annot"}
    if path.suffix.lower() in by_ext:
        return by_ext[path.suffix.lower()]
    raise HypnogramError(
        f"Cannot tell the hypnogram format from the file name '{path.name}'. Use one of the "
        f"extensions .csv, .tsv, _events.tsv, .edf, .json, .txt, .eannot, .annot, or choose "
        f"a format ({', '.join(WRITE_FORMATS)}).")


def _num(x: float) -> str:
    """Seconds as short text: '30', '0.5', '79470' (10 significant digits: ms over 100 days)."""
    return f"{x:.10g}"


def _rows(hyp: Hypnogram) -> list[tuple[str, str, int]]:
    """(onset, duration, index) per epoch, as text."""
    return [(_num(hyp.onset(i)), _num(hyp.epoch_length), i) for i in range(hyp.n_epochs)]


def _table(hyp: Hypnogram, delimiter: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(["onset", "duration", "stage", "provenance"])
    for onset, dur, i in _rows(hyp):
        w.writerow([onset, dur, hyp[i], str(hyp.provenance[i])])
    return buf.getvalue().encode("utf-8")


def _bids_tsv(hyp: Hypnogram) -> bytes:
    lines = ["onset\tduration\ttrial_type\tvalue"]
    for onset, dur, i in _rows(hyp):
        lines.append(f"{onset}\t{dur}\tsleep_stage_{hyp[i]}\t{YASA_INT[hyp[i]]}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _bids_sidecar(hyp: Hypnogram, provenance: dict | None) -> bytes:
    doc = {
        "onset": {"Description": "Onset of the epoch from the start of the recording.",
                  "Units": "s"},
        "duration": {"Description": "Duration of the epoch.", "Units": "s"},
        "trial_type": {
            "LongName": "Sleep stage",
            "Description": "Sleep stage of the epoch (AASM).",
            "Levels": {f"sleep_stage_{s}": _LONG_NAMES[s] for s in ALL_LABELS},
        },
        "value": {
            "Description": "Sleep stage as a YASA integer code.",
            "Levels": {str(YASA_INT[s]): s for s in ALL_LABELS},
        },
        "StageScorer": hyp.scorer,
        "EpochLength": hyp.epoch_length,
        "GeneratedBy": [{"Name": "EEG-VLM Desktop"}],
        "Provenance": provenance or {},
    }
    return _dumps(doc)


def _edf(hyp: Hypnogram, meas_date: datetime | None, patient: str | None = None) -> bytes:
    from edfio import Edf, EdfAnnotation, Recording

    kwargs: dict = {}
    frac = 0.0
    if meas_date is not None:
        # EDF stores wall-clock time without a zone; the readers compare clock times too.
        # Sub-seconds go into the onsets: MNE ignores a sub-second record start, so an EDF
        # start of 16:13:00 with onsets +0.5 s reads back the same with any reader.
        clock = meas_date.replace(tzinfo=None)
        frac = clock.microsecond / 1e6
        clock = clock.replace(microsecond=0)
        kwargs = {"starttime": clock.time(), "recording": Recording(startdate=clock.date())}
    annotations = [EdfAnnotation(onset + frac, dur, EDF_LABELS[stage])
                   for onset, dur, stage in hyp.events()]
    buf = io.BytesIO()
    # An EDF+C with no signal, only annotations: the layout of Sleep-EDF's hypnogram files.
    Edf(signals=[], annotations=annotations, **kwargs).write(buf)
    data = buf.getvalue()
    if patient is not None:
        # Bytes 8-88 of every EDF header: the local patient identification. Patched in
        # rather than built with edfio's Patient, which accepts only EDF+'s four subfields
        # and would rewrite a legacy field ("Female_33yr", free text) it came from.
        field = patient.encode("ascii", "replace")[:80].ljust(80)
        data = data[:8] + field + data[88:]
    return data


def _json(hyp: Hypnogram, meas_date: datetime | None, provenance: dict | None) -> bytes:
    doc = {
        "format": "eegvlm-hypnogram",
        "version": 1,
        "hypnogram": hyp.to_dict(),
        "provenance": provenance or {},
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "meas_date": meas_date.isoformat() if meas_date is not None else None,
    }
    return _dumps(doc)


def _dumps(doc: dict) -> bytes:
    try:
        return (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ValueError(f"'provenance' must hold only JSON values (str, numbers, lists, "
                         f"dicts; no NaN): {err}") from err


def _yasa_txt(hyp: Hypnogram) -> bytes:
    # A bare list of codes always starts at the recording start; an offset that is a whole
    # number of epochs becomes leading unscored epochs, anything else cannot be stored.
    k = hyp.start / hyp.epoch_length
    if k < -1e-9 or abs(k - round(k)) * hyp.epoch_length > 1e-3:
        raise HypnogramError(
            f"The hypnogram starts at {hyp.start:g} s, which a YASA text file (one code per "
            f"epoch from the recording start) cannot store. Save it as CSV, EDF or JSON.")
    codes = [YASA_INT[UNS]] * int(round(k)) + list(hyp.to_yasa_int())
    return ("\n".join(str(int(c)) for c in codes) + "\n").encode("ascii")
