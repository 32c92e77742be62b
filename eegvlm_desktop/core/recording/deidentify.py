"""What of a recording's identity an export may carry: by default, nothing that names the person.

An EDF header holds the patient's name, code, sex and birth date, a free-text recording id
and the start date. Exports are built from an allow-list (the blocks below) rather than by
scrubbing a copy of the header, so a field nobody thought of cannot slip through. The user
opts in to identity with ``include_identity=True`` (e.g. an export that stays in the clinic).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

#: EDF+ convention for an anonymised recording, used as the neutral file name's stem.
NEUTRAL_STEM = "recording"


def recording_name(path_name: str, sha256: str, include_identity: bool) -> str:
    """The recording's file name, or a neutral one derived from its content hash.

    File names are often the patient's name or hospital number ("Doe_John_2021.edf"), so
    the default is ``recording-<first 12 hex of sha256><suffix>``: still different for
    different recordings, and the same for two exports of one file.
    """
    if include_identity:
        return path_name
    suffix = path_name[path_name.rfind("."):] if "." in path_name else ""
    return f"{NEUTRAL_STEM}-{sha256[:12]}{suffix.lower()}"


def start_block(meas_date: datetime | None, include_identity: bool) -> dict[str, Any] | None:
    """When the recording started: time of day and a relative day; the date only on opt-in.

    The time of day is kept because it is part of the scoring context (a night recorded from
    22:00 and a nap at 14:00 differ, and "lights off" is clock time); the calendar date is
    dropped because a date tied to a person is an identifier (HIPAA Safe Harbor, and it
    narrows a small clinic's patients to one). Onsets in the export are relative seconds, so
    day 0 is the day the recording starts. ``None`` when the file has no start time.
    """
    if meas_date is None:
        return None
    block: dict[str, Any] = {"relative_day": 0, "time_of_day": meas_date.strftime("%H:%M:%S")}
    if include_identity:
        block["datetime"] = meas_date.isoformat()
    return block


def patient_block(patient_info: dict[str, str] | None) -> dict[str, str]:
    """The header's identifying fields, for an export the user chose to keep identified."""
    return {str(k): str(v) for k, v in sorted((patient_info or {}).items())}
