"""Open a sleep recording lazily and serve its samples in display units (µV).

MNE reads the file (``mne.io.read_raw(..., preload=False)``) and gives names, types, dates.
For EDF/BDF this module also parses the header itself because (a) a damaged file must give a
clear message before MNE fails obscurely or reads garbage silently, (b) MNE hides the
per-channel rates and original labels, and (c) MNE 1.13's lazy read of a mixed-rate EDF returns
zeros for the low-rate channels when a segment does not start on a data-record boundary, so
EDF/BDF samples are read here straight from the data records instead.
"""
from __future__ import annotations

import math
import numbers
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.errors import RecordingError

CH_TYPES: tuple[str, ...] = ("eeg", "eog", "emg", "ecg", "resp", "temp", "misc", "stim")
EPHYS_TYPES = frozenset({"eeg", "eog", "emg", "ecg"})

#: Extensions opened through MNE, with the format's name for messages.
SUPPORTED_FORMATS: dict[str, str] = {
    ".edf": "EDF/EDF+", ".bdf": "BDF/BDF+", ".gdf": "GDF", ".vhdr": "BrainVision",
    ".fif": "MNE FIF", ".fif.gz": "MNE FIF", ".set": "EEGLAB", ".cnt": "Neuroscan/ANT CNT",
    ".mff": "EGI MFF", ".nxe": "eXimia", ".eeg": "Nihon Kohden", ".lay": "Persyst",
    ".data": "Nicolet", ".cdt": "Curry", ".nedf": "NEDF", ".mefd": "MEF3",
}
# Formats whose reader types every channel 'eeg' unless told otherwise, so a channel's name is
# the best evidence of its type. FIF and EGI store real types (and EGI's 'E1' is scalp EEG).
_NAME_TYPED = {".edf", ".bdf", ".gdf", ".vhdr", ".set", ".cnt", ".nxe", ".eeg", ".lay", ".data"}

_MNE_TYPES = {"eeg": "eeg", "seeg": "eeg", "ecog": "eeg", "dbs": "eeg", "eog": "eog",
              "emg": "emg", "ecg": "ecg", "resp": "resp", "temperature": "temp",
              "stim": "stim", "misc": "misc"}
_NAME_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (t, re.compile(p, re.IGNORECASE)) for t, p in (
        ("eeg", r"^eeg\b"),
        ("stim", r"event|marker|trigger|status|^sti\b"),
        ("eog", r"eog|\b(loc|roc)\b|^e[12]([-_ :]|$)"),
        ("emg", r"emg|chin|submental|\bleg\b|tibial"),
        ("ecg", r"ecg|ekg"),
        ("resp", r"resp|thor|abdo|airflow|flow|nasal|cannula|effort|^(naf|vab|vth)"),
        ("temp", r"temp"),
        ("misc", r"spo2|sao2|pulse|pleth|^pr$|^hr$|pos(ition)?$|light|lux|phono|snore|hypno"),
    ))
# Unit strings (lower-cased) of voltage, as a factor to µV. EDF says 'uV', but files write
# 'UV', 'µV' or 'mV' too; MNE only scales the spellings it knows.
_TO_MICROVOLT = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}
# Robust EEG amplitude above this many volts means the numbers are really µV: no scalp EEG
# reaches 50 mV, but µV numbers taken as volts are ~1e1..1e3 V.
_MICROVOLTS_AS_VOLTS = 0.05
# Expected MNE warnings: Sleep-EDF mixes 100 Hz and 1 Hz channels (we read EDF samples
# ourselves, so MNE's lazy resampling artefacts never reach the screen) and per-channel
# prefilters (kept per channel in the header, not in MNE's single info['highpass']).
# MNE also complains when one channel's highpass exceeds another's lowpass (Sleep-EDF's EMG
# envelope: HP 16 Hz, LP 0.7 Hz), which only concerns its single summary value.
_EXPECTED_WARNINGS = ("mixed sampling frequencies", "channels contain different",
                      "is greater than lowpass cutoff")


def infer_type(name: str, mne_type: str = "eeg") -> str:
    """Channel type from MNE's type and, when MNE only guessed 'eeg'/'misc', from the name."""
    mapped = _MNE_TYPES.get(mne_type, "misc")
    if mapped not in ("eeg", "misc"):
        return mapped
    for ch_type, pattern in _NAME_RULES:
        if pattern.search(name.strip()):
            return ch_type
    return mapped


def _fail(path: Path, problem: str, todo: str) -> RecordingError:
    return RecordingError(f"Cannot open '{path.name}': {problem}\n\nFile: {path}\n\n{todo}")


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for ext in sorted(SUPPORTED_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def read_recording(path: str | Path) -> Recording:
    """Open a recording lazily (no samples are loaded).

    Parameters
    ----------
    path : str or Path
        Any file MNE reads: EDF/EDF+, BDF, BrainVision ``.vhdr``, FIF, GDF, EEGLAB ``.set``...

    Returns
    -------
    Recording

    Raises
    ------
    RecordingError
        The file is missing, unreadable, of an unknown kind, damaged, empty, or has no EEG.
    """
    path = Path(path).expanduser()
    ext = _format_of(path)
    if not path.exists():
        raise _fail(path, "the file does not exist.",
                    "Check the path, or whether the file was moved or renamed.")
    if path.is_dir() and ext != ".mff":
        raise _fail(path, "this is a folder, not a recording file.",
                    "Choose the recording file inside it (for BrainVision, the .vhdr file).")
    if ext not in SUPPORTED_FORMATS:
        kinds = ", ".join(f"{e} ({n})" for e, n in SUPPORTED_FORMATS.items())
        raise _fail(path, f"files ending in '{ext or '(no extension)'}' are not a recording "
                    "format this program reads.", f"Supported formats: {kinds}.")
    layout = None
    try:
        if ext in (".edf", ".bdf"):
            with path.open("rb") as fid:
                layout = _parse_edf_header(path, fid, bdf=ext == ".bdf")
        elif path.is_file():
            with path.open("rb") as fid:
                fid.read(1)
    except PermissionError:
        raise _fail(path, "permission to read the file was denied.",
                    "Ask the file's owner for read access, or copy it somewhere you can read."
                    ) from None
    except OSError as err:
        raise _fail(path, f"the file could not be read ({err.strerror or err}).",
                    "Check that the disk or network share is available.") from None
    raw, notes = _read_with_mne(path, ext)
    return Recording(path, raw, layout=layout, notes=notes)


def _read_with_mne(path: Path, ext: str) -> tuple[Any, list[str]]:
    import mne

    kwargs = {"infer_types": True} if ext in (".edf", ".bdf") else {}
    try:
        # Warnings are collected rather than printed: the expected ones are dropped (see
        # _EXPECTED_WARNINGS), the others become notes shown to the user with the file.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = mne.io.read_raw(path, preload=False, verbose="warning", **kwargs)
    except Exception as err:  # MNE raises many types; the user needs words, not a type
        raise _fail(path, f"the {SUPPORTED_FORMATS[ext]} reader failed: "
                    f"{type(err).__name__}: {err}",
                    "The file may be damaged or in a variant this program cannot read; try "
                    "exporting it again from the recording software.") from err
    notes = [str(w.message) for w in caught
             if not any(s in str(w.message).lower() for s in _EXPECTED_WARNINGS)]
    return raw, notes


# ---- EDF/BDF header and data records ------------------------------------------------------
_EDF_FIELDS = (("label", 16), ("transducer", 80), ("physical dimension", 8),
               ("physical minimum", 8), ("physical maximum", 8), ("digital minimum", 8),
               ("digital maximum", 8), ("prefiltering", 80), ("samples per record", 8),
               ("reserved", 32))
_REPAIR = ("The file is damaged or was not written as EDF/BDF. Copy or export it again from "
           "the recording software.")
_MAGIC = {b"\x89PNG": "a PNG image", b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive",
          b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image"}


@dataclass
class EdfLayout:
    """What an EDF/BDF header says about the data records (all signals, header order)."""

    bdf: bool
    patient: str
    recording: str
    header_bytes: int
    n_records: int
    record_s: float
    labels: list[str]
    units: list[str]
    n_samps: np.ndarray
    cal: np.ndarray  # physical = digital * cal + offset
    offset: np.ndarray
    signals: list[int]  # header indices of the non-annotation signals, MNE's channel order

    @property
    def max_samp(self) -> int:
        return int(self.n_samps[self.signals].max())

    def sfreq(self, sig: int) -> float:
        return float(self.n_samps[sig] / self.record_s)

    def matches(self, names: list[str], sfreq: float, n_times: int) -> bool:
        """True when MNE's channels and length are exactly this header's signals."""
        return (len(names) == len(self.signals) and n_times == self.n_records * self.max_samp
                and math.isclose(sfreq, self.max_samp / self.record_s))

    def patient_info(self) -> dict[str, str]:
        """Identifying header fields, parsed when they follow EDF+ (code sex birthdate name)."""
        info = dict(patient_field=self.patient, recording_field=self.recording,
                    patient_code="", sex="", birthdate="", name=self.patient, recording_id="")
        parts = self.patient.split()
        if len(parts) >= 4 and parts[1] in ("M", "F", "X") and re.fullmatch(
                r"X|\d{2}-[A-Za-z]{3}-\d{4}", parts[2]):
            keep = ["" if p == "X" else p.replace("_", " ") for p in parts[:4]]
            info.update(patient_code=keep[0], sex=keep[1], birthdate=keep[2], name=keep[3])
        rec = self.recording.split()
        if len(rec) >= 3 and rec[0] == "Startdate" and re.fullmatch(
                r"X|\d{2}-[A-Za-z]{3}-\d{4}", rec[1]):
            info["recording_id"] = "" if rec[2] == "X" else rec[2]
        else:
            info["recording_id"] = self.recording
        return info

    def read(self, path: Path, idx: np.ndarray, start: int, stop: int,
             hold: Sequence[bool]) -> np.ndarray:
        """Physical values of channels ``idx``, samples ``[start, stop)`` at the top rate.

        Low-rate channels are interpolated linearly between their samples (``hold``: repeated
        instead, for event/stim channels whose values are codes, not levels).
        """
        spr, rec_len, width = self.max_samp, int(self.n_samps.sum()), 3 if self.bdf else 2
        # One record of margin on each side gives low-rate channels neighbours to interpolate.
        r0, r1 = max(0, start // spr - 1), min(self.n_records, -(-stop // spr) + 1)
        with path.open("rb") as fid:
            fid.seek(self.header_bytes + r0 * rec_len * width)
            buf = fid.read((r1 - r0) * rec_len * width)
        if len(buf) != (r1 - r0) * rec_len * width:
            raise _fail(path, "the file became shorter while it was open.",
                        "Make sure no other program is writing or moving it, then reopen it.")
        if self.bdf:  # 24-bit little-endian two's complement
            b = np.frombuffer(buf, np.uint8).reshape(-1, 3).astype(np.int32)
            dig = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            dig = np.where(dig >= 1 << 23, dig - (1 << 24), dig)
        else:
            dig = np.frombuffer(buf, "<i2")
        recs = dig.reshape(r1 - r0, rec_len)
        first = np.concatenate([[0], np.cumsum(self.n_samps)])
        out = np.empty((len(idx), stop - start))
        target = np.arange(start, stop)
        for row, ch in enumerate(idx):
            sig = self.signals[ch]
            n = int(self.n_samps[sig])
            x = recs[:, first[sig]:first[sig] + n].ravel() * self.cal[sig] + self.offset[sig]
            if n == spr:
                out[row] = x[start - r0 * spr:stop - r0 * spr]
            elif hold[row]:
                k = (target * n) // spr - r0 * n
                out[row] = x[np.clip(k, 0, x.size - 1)]
            else:  # native sample k sits at top-rate sample k * spr / n
                out[row] = np.interp(target, (r0 * n + np.arange(x.size)) * (spr / n), x)
        return out


def _number(path: Path, kind: str, field: str, text: str, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _fail(path, f"the {kind} header is corrupt: its '{field}' field holds "
                    f"{text!r}, which is not {'an integer' if integer else 'a number'}.",
                    _REPAIR)
    return value


def _parse_edf_header(path: Path, fid: Any, bdf: bool) -> EdfLayout:
    """Parse and check an EDF/BDF header against the file size; raise RecordingError."""
    kind, size = ("BDF" if bdf else "EDF"), path.stat().st_size
    head = fid.read(256)
    is_bdf, is_edf = head[:8] == b"\xffBIOSEMI", head[:1] == b"0" and not head[1:8].strip()
    if not (is_bdf if bdf else is_edf):
        if is_bdf or is_edf:
            other = "BDF" if is_bdf else "EDF"
            raise _fail(path, f"its content is {other}, but its name ends in .{kind.lower()}.",
                        f"Rename it to end in .{other.lower()} and open it again.")
        what = next((w for m, w in _MAGIC.items() if head.startswith(m)), None)
        if what is None and head and all(32 <= c < 127 or c in b"\t\r\n" for c in head):
            what = "a text file"
        expected = b"\xffBIOSEMI" if bdf else b"0       "
        raise _fail(path, f"it is not an {kind} file: an {kind} file starts with "
                    f"{expected!r}, but this one starts with "
                    f"{head[:8]!r}" + (f" (it looks like {what})." if what else "."),
                    "It may be another kind of file that was renamed. Choose the original "
                    "recording file.")
    text = head.decode("latin-1")
    if len(head) < 256:
        raise _fail(path, f"the file is only {size} bytes long, shorter than the 256-byte "
                    f"{kind} header.", _REPAIR)
    header_bytes = int(_number(path, kind, "header size", text[184:192].strip(), True))
    n_records = int(_number(path, kind, "number of data records", text[236:244].strip(), True))
    record_s = _number(path, kind, "data record duration", text[244:252].strip(), False)
    ns = int(_number(path, kind, "number of signals", text[252:256].strip(), True))
    if ns < 1 or header_bytes != 256 * (ns + 1):
        raise _fail(path, f"the {kind} header is corrupt: it announces {ns} signals and a "
                    f"{header_bytes}-byte header (expected 256 x (signals + 1)).", _REPAIR)
    sig = fid.read(256 * ns).decode("latin-1")
    if len(sig) < 256 * ns:
        raise _fail(path, f"the file ends inside its {kind} header ({size} bytes; the header "
                    f"alone needs {header_bytes}).", "Copy or download the file again.")
    fields, pos = {}, 0
    for name, width in _EDF_FIELDS:
        fields[name] = [sig[pos + i * width:pos + (i + 1) * width].strip() for i in range(ns)]
        pos += width * ns
    labels = fields["label"]
    signals = [i for i, lab in enumerate(labels) if lab not in ("EDF Annotations",
                                                               "BDF Annotations")]
    num = {}
    for f in ("physical minimum", "physical maximum", "digital minimum", "digital maximum",
              "samples per record"):
        # Annotation signals' ranges are meaningless (often blank), so only check signals.
        num[f] = np.array([
            _number(path, kind, f"{f} of signal {i + 1} ({labels[i]})", fields[f][i],
                    f.startswith(("digital", "samples")))
            if i in signals or f.startswith("samples") else 0.0 for i in range(ns)])
    n_samps = num["samples per record"].astype(int)
    for i in signals:  # (an equal physical min and max is allowed: a flat, unused channel)
        if n_samps[i] < 1 or num["digital maximum"][i] <= num["digital minimum"][i]:
            raise _fail(path, f"the {kind} header is corrupt: signal {i + 1} ('{labels[i]}') "
                        f"has {n_samps[i]} samples per record and digital range "
                        f"{num['digital minimum'][i]:g}..{num['digital maximum'][i]:g}.",
                        _REPAIR)
    if not signals:
        raise _fail(path, "it holds only annotations (it may be a hypnogram), no signals.",
                    "Open the recording (PSG) file, then import this file as its hypnogram.")
    rec_bytes = int(n_samps.sum()) * (3 if bdf else 2)
    data_bytes = size - header_bytes
    if n_records == -1:  # 'unknown': written while recording; the file size tells
        n_records = max(0, data_bytes) // rec_bytes
    if n_records < 0 or not record_s > 0:
        raise _fail(path, f"the {kind} header is corrupt: {n_records} data records of "
                    f"{record_s:g} s each.", _REPAIR)
    if n_records == 0:
        raise _fail(path, "the recording holds no samples (zero data records).",
                    "The recording was probably stopped before it started; choose another file.")
    if data_bytes < n_records * rec_bytes:
        complete = max(0, data_bytes) // rec_bytes
        raise _fail(path, f"the file is truncated: its header announces {n_records} data "
                    f"records of {record_s:g} s ({n_records * record_s:g} s, "
                    f"{header_bytes + n_records * rec_bytes} bytes), but the file has only "
                    f"{size} bytes: {complete} complete records ({complete * record_s:g} s).",
                    "Copy or download the file again. If the recording really stopped early, "
                    "an EDF editor can set the header's 'number of data records' to "
                    f"{complete} so that the complete part opens.")
    dmin, dmax = num["digital minimum"], num["digital maximum"]
    pmin, pmax = num["physical minimum"], num["physical maximum"]
    with np.errstate(divide="ignore", invalid="ignore"):
        cal = np.where(dmax > dmin, (pmax - pmin) / (dmax - dmin), 1.0)
    return EdfLayout(bdf=bdf, patient=text[8:88].strip(), recording=text[88:168].strip(),
                     header_bytes=header_bytes, n_records=n_records, record_s=record_s,
                     labels=labels, units=fields["physical dimension"], n_samps=n_samps,
                     cal=cal, offset=pmin - dmin * cal, signals=signals)


class Recording:
    """A lazily opened recording: channel metadata plus fast windowed reads in µV.

    Build it with :func:`read_recording`. Channel lists (``ch_names``, ``ch_types``,
    ``orig_sfreqs``, ``units``) share one index, which is also the ``picks`` index of
    :meth:`get_data`.
    """

    def __init__(self, path: Path, raw: Any, *, layout: EdfLayout | None = None,
                 notes: list[str] | None = None) -> None:
        self.path = Path(path)
        self.raw = raw
        self.notes: list[str] = list(notes or [])
        self.unit_notes: list[str] = []
        self.sfreq = float(raw.info["sfreq"])
        self.n_times = int(raw.n_times)
        self.meas_date: datetime | None = raw.info["meas_date"]
        ext = _format_of(self.path)
        mne_names = list(raw.ch_names)
        mne_types = raw.get_channel_types()
        # The fast EDF path needs MNE's channels to be exactly the header's signals.
        if layout is not None and not layout.matches(mne_names, self.sfreq, self.n_times):
            layout = None
        self._layout = layout
        self.ch_names: list[str] = (
            [layout.labels[i] for i in layout.signals] if layout else mne_names)
        self.ch_types: list[str] = [
            infer_type(name, t) if ext in _NAME_TYPED else _MNE_TYPES.get(t, "misc")
            for name, t in zip(self.ch_names, mne_types)]
        self.mne_names = mne_names
        if layout:
            self.orig_sfreqs = [float(layout.sfreq(i)) for i in layout.signals]
            self.patient_info = layout.patient_info()
        else:
            self.orig_sfreqs = [self.sfreq] * len(mne_names)
            self.patient_info = _mne_patient_info(raw)
        if self.n_times == 0:
            raise _fail(self.path, "the recording holds no samples (zero length).",
                        "The recording was probably stopped before it started; choose "
                        "another file.")
        if "eeg" not in self.ch_types:
            listing = ", ".join(f"{n} ({t})" for n, t in zip(self.ch_names, self.ch_types))
            raise _fail(self.path, f"it has no EEG channel. Its channels are: {listing}.",
                        "Sleep staging needs at least one EEG channel. If one of these is EEG, "
                        "rename it with an 'EEG ' prefix (e.g. 'EEG C3-M2').")
        self.units, self._scale = self._units_and_scales()
        self._check_amplitudes()

    # ---- metadata -------------------------------------------------------------------
    @property
    def duration(self) -> float:
        """Length in seconds (``n_times / sfreq``)."""
        return self.n_times / self.sfreq

    @property
    def eeg_indices(self) -> list[int]:
        """Indices of the EEG channels."""
        return [i for i, t in enumerate(self.ch_types) if t == "eeg"]

    def n_epochs(self, epoch_length: float = 30.0) -> int:
        """Number of complete epochs of ``epoch_length`` seconds."""
        if not (isinstance(epoch_length, numbers.Real) and epoch_length > 0):
            raise ValueError("Invalid value for the 'epoch_length' parameter: it must be a "
                             f"positive number of seconds, but got {epoch_length!r} instead.")
        return math.floor(self.duration / epoch_length + 1e-9)

    def summary(self) -> str:
        """One paragraph describing channels, duration and start time (CLI ``info``)."""
        chans = "; ".join(
            f"{n} [{t}, {r:g} Hz{', ' + u if u else ''}]"
            for n, t, r, u in zip(self.ch_names, self.ch_types, self.orig_sfreqs, self.units))
        secs = round(self.duration)
        start = self.meas_date.strftime("%Y-%m-%d %H:%M:%S %Z") if self.meas_date else "unknown"
        text = (f"{self.path.name} ({SUPPORTED_FORMATS.get(_format_of(self.path), '?')}): "
                f"{len(self.ch_names)} channels: {chans}. Duration {secs // 3600} h "
                f"{secs % 3600 // 60:02d} min {secs % 60:02d} s ({self.duration:g} s, "
                f"{self.n_epochs()} complete 30-s epochs), read at {self.sfreq:g} Hz. "
                f"Start: {start}.")
        return " ".join([text] + self.unit_notes + self.notes)

    def __repr__(self) -> str:
        return (f"<Recording {self.path.name!r}: {len(self.ch_names)} ch, "
                f"{self.duration:g} s @ {self.sfreq:g} Hz>")

    # ---- samples --------------------------------------------------------------------
    def get_data(self, picks: Sequence[int] | None = None, start: int = 0,
                 stop: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` at ``sfreq``, in display units (µV for EEG/EOG/EMG/ECG).

        Parameters
        ----------
        picks : sequence of int or None
            Channel indices; None for all channels.
        start, stop : int
            Sample range at ``sfreq``; clipped to the recording (``stop=None``: the end).

        Returns
        -------
        ndarray, float64, shape (n_picks, stop - start)
        """
        idx = self._check_picks(picks)
        start = max(0, int(start))
        stop = self.n_times if stop is None else min(self.n_times, int(stop))
        if stop <= start or len(idx) == 0:
            return np.zeros((len(idx), 0))
        if self._layout is not None:
            stims = [self.ch_types[i] == "stim" for i in idx]
            data = self._layout.read(self.path, idx, start, stop, hold=stims)
        else:
            with warnings.catch_warnings():
                # MNE's mixed-rate edge-artefact warning is expected for lazy reads.
                warnings.filterwarnings("ignore", message=".*mixed sampling frequencies")
                data = self.raw.get_data(picks=list(idx), start=start, stop=stop)
        data *= self._scale[idx, np.newaxis]
        return data

    def _check_picks(self, picks: Sequence[int] | None) -> np.ndarray:
        n = len(self.ch_names)
        if picks is None:
            return np.arange(n)
        idx = np.asarray(picks, dtype=int).ravel()
        bad = [int(i) for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"Invalid value for the 'picks' parameter: channel indices must "
                             f"be in 0..{n - 1}, but got {bad} instead.")
        return idx

    # ---- units ----------------------------------------------------------------------
    def _units_and_scales(self) -> tuple[list[str], np.ndarray]:
        """Display unit and the factor from the reader's numbers to it, per channel."""
        units, scale = [], np.ones(len(self.ch_names))
        orig = getattr(self.raw, "_orig_units", None) or {}
        for i, (name, ch_type) in enumerate(zip(self.ch_names, self.ch_types)):
            if self._layout is not None:  # our EDF reader returns the header's physical unit
                text = self._layout.units[self._layout.signals[i]].strip()
            else:  # MNE returns volts for what it knows is voltage
                text = str(orig.get(self.mne_names[i], "")).strip()
                text = "" if text.lower() == "n/a" else text
            to_uv = _TO_MICROVOLT.get(text.lower())
            if ch_type in EPHYS_TYPES:
                units.append("µV")
                if self._layout is None:
                    scale[i] = 1e6
                elif to_uv is None:
                    scale[i] = 1.0
                    self.unit_notes.append(
                        f"Channel '{name}': unit '{text}' is not a voltage unit; its numbers "
                        "are shown as µV.")
                else:
                    scale[i] = to_uv
                    self._fix_mne_gain(i, name, text, to_uv)
            else:
                units.append("µV" if to_uv == 1.0 else text)
                if self._layout is None and to_uv is not None:  # MNE gave volts
                    scale[i] = 1e6 / to_uv
        return units, scale

    def _fix_mne_gain(self, i: int, name: str, text: str, to_uv: float) -> None:
        """Correct MNE's gain when it misread a unit (DREAMS writes 'UV'), and note it."""
        gains = self._mne_gains()
        want = to_uv * 1e-6  # header number -> volts
        if gains is None or np.isclose(gains[i], want):
            return
        gains[i] = want
        self.unit_notes.append(
            f"Channel '{name}': the file writes its unit as '{text}', which MNE does not "
            f"recognise; it was read as {'µV' if to_uv == 1 else 'mV'}.")

    def _mne_gains(self) -> np.ndarray | None:
        """MNE's per-channel EDF gains (header number -> volts), applied on every lazy read.

        Correcting them makes ``self.raw.get_data()`` (used by exporters) return volts too.
        """
        if self._layout is None or not getattr(self.raw, "_raw_extras", None):
            return None
        return self.raw._raw_extras[0].get("units")

    def _check_amplitudes(self) -> None:
        """Fallback: EEG whose robust amplitude in volts is > 50 mV really holds µV numbers."""
        idx = [i for i, t in enumerate(self.ch_types) if t in EPHYS_TYPES]
        if not idx:
            return
        win = int(min(30.0 * self.sfreq, max(1, self.n_times // 3)))
        amps = []
        for frac in (0.1, 0.5, 0.9):  # three windows: one bad stretch cannot decide
            s0 = int((self.n_times - win) * frac)
            x = self.get_data(idx, s0, s0 + win)
            amps.append(np.median(np.abs(x - np.median(x, axis=1, keepdims=True)), axis=1))
        robust_volts = 1.4826 * np.median(amps, axis=0) * 1e-6
        for j, i in enumerate(idx):
            if robust_volts[j] > _MICROVOLTS_AS_VOLTS:
                self._scale[i] *= 1e-6
                if (gains := self._mne_gains()) is not None:
                    gains[i] *= 1e-6
                self.unit_notes.append(
                    f"Channel '{self.ch_names[i]}': typical amplitude {robust_volts[j]:.3g} V "
                    "is impossible for a body signal, so the numbers were taken as µV.")


def _mne_patient_info(raw: Any) -> dict[str, str]:
    """Identifying fields from a non-EDF file, kept apart so exports can de-identify."""
    info = raw.info.get("subject_info") or {}
    name = " ".join(str(info.get(k, "")) for k in ("first_name", "last_name")).strip()
    birthday = info.get("birthday")
    return {"name": name, "birthdate": birthday.isoformat() if birthday else "",
            "sex": str(info.get("sex", "")), "patient_code": str(info.get("his_id", "")),
            "recording_id": str(raw.info.get("description") or "")}
