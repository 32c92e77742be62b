"""Open a sleep recording lazily and serve its samples in display units (µV).

MNE reads the file (``mne.io.read_raw(..., preload=False)``) and gives names, types, dates.
For EDF/BDF the header is also parsed by our own reader (:mod:`.edf`) because (a) a damaged
file must give a clear message before MNE fails obscurely or reads garbage silently, (b) MNE
hides the per-channel rates and original labels, and (c) MNE 1.13's lazy read of a mixed-rate
EDF returns zeros for the low-rate channels when a segment does not start on a data-record
boundary, so EDF/BDF samples are read there straight from the data records instead.
"""
from __future__ import annotations

import math
import numbers
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.recording.edf import EdfLayout
from eegvlm_desktop.core.recording.edf import open_error as _fail
from eegvlm_desktop.core.recording.edf import parse_edf_header as _parse_edf_header

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


def preload_reader() -> None:
    """Import MNE's EDF/BDF reader now (~0.5 s of imports, mostly holding the GIL).

    The app calls this on its job worker once its window is on screen, so that opening the
    first night does not pay the import on the GUI thread (issue 18).
    """
    import mne

    mne.io.read_raw_edf  # noqa: B018 - MNE's lazy loader imports the reader on access


def _read_with_mne(path: Path, ext: str) -> tuple[Any, list[str]]:
    import mne

    kwargs = {"infer_types": True} if ext in (".edf", ".bdf") else {}
    # EDF/BDF straight to their reader: mne.io.read_raw first imports all ~30 of MNE's
    # readers (~70 ms more, and mne.epochs with them) to look the extension up.
    reader = {".edf": mne.io.read_raw_edf, ".bdf": mne.io.read_raw_bdf}.get(ext,
                                                                           mne.io.read_raw)
    try:
        # Warnings are collected rather than printed: the expected ones are dropped (see
        # _EXPECTED_WARNINGS), the others become notes shown to the user with the file.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = reader(path, preload=False, verbose="warning", **kwargs)
    except Exception as err:  # MNE raises many types; the user needs words, not a type
        raise _fail(path, f"the {SUPPORTED_FORMATS[ext]} reader failed: "
                    f"{type(err).__name__}: {err}",
                    "The file may be damaged or in a variant this program cannot read; try "
                    "exporting it again from the recording software.") from err
    notes = [str(w.message) for w in caught
             if not any(s in str(w.message).lower() for s in _EXPECTED_WARNINGS)]
    return raw, notes


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

    def physical_range(self, channel: int) -> tuple[float, float] | None:
        """The range the file could store for ``channel``, in display units (low, high).

        From the EDF/BDF header's physical minimum and maximum; ``None`` for other formats,
        which do not state one.
        """
        self._check_picks([channel])
        lay = self._layout
        if lay is None or lay.phys_min is None or lay.phys_max is None:
            return None
        sig = lay.signals[channel]
        a, b = (float(v) * self._scale[channel] for v in (lay.phys_min[sig], lay.phys_max[sig]))
        return (min(a, b), max(a, b))

    def resolution(self, channel: int) -> float:
        """One step of the stored values of ``channel`` in display units (0 if unknown)."""
        self._check_picks([channel])
        if self._layout is None:
            return 0.0
        return abs(float(self._layout.cal[self._layout.signals[channel]])
                   * self._scale[channel])

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
