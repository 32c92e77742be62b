"""Read EDF/BDF headers and data records ourselves, without MNE.

Why not let MNE read the samples: MNE 1.13's lazy ``get_data`` of a mixed-rate EDF (Sleep-EDF
mixes 100 Hz EEG with 1 Hz channels) returns zeros for the low-rate channels when the window
does not start on a data-record boundary, which is what a scrolling viewer asks for. MNE also
hides the per-channel rates and original labels, and a damaged file must give a clear message
before MNE fails obscurely or reads garbage silently. So :func:`parse_edf_header` checks the
header against the file size, and :meth:`EdfLayout.read` reads samples straight from the data
records, upsampling low-rate channels to the top rate.

:mod:`.recording` still opens the file with MNE (names, types, dates) and uses this module
only when MNE's channels are exactly the header's signals. This module must not import
:mod:`.recording` (it imports this one).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.errors import RecordingError

__all__ = ["EdfLayout", "parse_edf_header", "open_error"]


def open_error(path: Path, problem: str, todo: str) -> RecordingError:
    """The error for a recording that cannot be opened: what is wrong, the file, what to do."""
    return RecordingError(f"Cannot open '{path.name}': {problem}\n\nFile: {path}\n\n{todo}")


_fail = open_error  # the short name the checks below (and recording.py) use

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
    # The header's physical range per signal (header units): what the recording could hold.
    phys_min: np.ndarray | None = None
    phys_max: np.ndarray | None = None

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


def parse_edf_header(path: Path, fid: Any, bdf: bool) -> EdfLayout:
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
                     cal=cal, offset=pmin - dmin * cal, signals=signals, phys_min=pmin,
                     phys_max=pmax)
