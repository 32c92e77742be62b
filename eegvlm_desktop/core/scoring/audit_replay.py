"""Recover labels that reached the audit trail but not the labels file.

Every change is written to the audit trail (fsync-ed) *before* the sidecar is rewritten
(:mod:`.session`), precisely so that a crash between the two writes loses nothing: the change
is in the trail. This module is the other half of that promise: on open, audit lines newer
than the sidecar are applied again.

"Newer than the sidecar" is exact: each sidecar records how many bytes of the audit trail its
labels include (``audit_end``), and everything after that offset was written later. Sidecars
written before that field existed fall back to time: lines stamped at or after the sidecar's
``saved`` time. Applying a line that is already in the sidecar changes nothing (each line
says what the epoch's label *became*), so erring towards replaying too much is safe.

Only lines of sessions on this very recording are replayed: each session starts with an
``"open"`` event carrying the recording's fingerprint, and label lines that follow an open of
another version of the file (the recording was replaced) are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from eegvlm_desktop.core.hypnogram.hypnogram import PROVENANCES, Change, Hypnogram
from eegvlm_desktop.core.scoring.history import AuditLog
from eegvlm_desktop.core.stages import ALL_LABELS


@dataclass
class Recovery:
    """What :func:`replay_events` applied.

    Attributes
    ----------
    changes : list of Change
        The epochs whose label changed, in the order applied.
    skipped : int
        Audit lines that could not be applied (unknown stage, epoch outside the night).
    """

    changes: list[Change] = field(default_factory=list)
    skipped: int = 0

    @property
    def n_epochs(self) -> int:
        """How many distinct epochs were changed."""
        return len({c.index for c in self.changes})

    def message(self) -> str:
        """One sentence for the status bar, or ``''`` when nothing was recovered."""
        if not self.changes and not self.skipped:
            return ""
        parts = []
        if self.changes:
            last: dict[int, str] = {}
            for c in self.changes:
                last[c.index] = c.new
            shown = ", ".join(f"epoch {i + 1} {s}" for i, s in list(last.items())[:5])
            more = f" and {len(last) - 5} more" if len(last) > 5 else ""
            n = len(last)
            parts.append(f"Recovered {n} label{'s' if n != 1 else ''} from the audit trail "
                         f"that the last session recorded but did not get to save "
                         f"({shown}{more})")
        if self.skipped:
            parts.append(f"{self.skipped} audit line{'s' if self.skipped != 1 else ''} could "
                         f"not be replayed (unknown stage or epoch)")
        return "; ".join(parts) + "."


def unsaved_events(audit: AuditLog, *, audit_end: int | None, saved: str | None,
                   has_sidecar: bool) -> list[dict[str, Any]]:
    """The audit events the sidecar does not include, oldest first.

    Parameters
    ----------
    audit : AuditLog
        The recording's audit trail.
    audit_end : int or None
        The sidecar's ``audit_end`` (bytes of the trail its labels include), if it has one.
    saved : str or None
        The sidecar's ``saved`` time (ISO UTC), used when ``audit_end`` is missing or does
        not fit the trail (shorter than it, or not at a line boundary).
    has_sidecar : bool
        False when there is no sidecar at all: then every event is unsaved.
    """
    if not has_sidecar:
        return audit.read()
    if audit_end is not None:
        tail = audit.read_from(audit_end)
        if tail is not None:
            return tail
    if not saved:
        return []
    # ISO 8601 UTC strings of one format sort like the times they name.
    return [e for e in audit.read() if str(e.get("time", "")) >= saved
            or e.get("event") == "open"]


def replay_events(hyp: Hypnogram, events: Iterable[dict[str, Any]], *, fingerprint: str,
                  session_fingerprint: str | None) -> Recovery:
    """Apply the label lines of ``events`` to ``hyp`` in order (in place).

    Parameters
    ----------
    hyp : Hypnogram
        The labels read from the sidecar (or unscored ones when there is none).
    events : iterable of dict
        Audit events, oldest first (see :func:`unsaved_events`).
    fingerprint : str
        The open recording's fingerprint: only label lines of sessions on it are applied.
    session_fingerprint : str or None
        The fingerprint of the session the first events belong to when they do not start
        with an ``"open"`` event (the sidecar's own, when it was read); ``None``: unknown,
        skip until an ``"open"`` event says.

    Returns
    -------
    Recovery
    """
    current = session_fingerprint
    out = Recovery()
    for event in events:
        kind = event.get("event")
        if kind == "open":
            current = event.get("fingerprint")
            continue
        if kind != "label" or current != fingerprint:
            continue
        epoch, new, source = event.get("epoch"), event.get("new"), event.get("source")
        if (not isinstance(epoch, int) or not 0 <= epoch < hyp.n_epochs
                or new not in ALL_LABELS or source not in PROVENANCES):
            out.skipped += 1
            continue
        out.changes += hyp.set_stages([epoch], new, source)
    return out


__all__ = ["Recovery", "unsaved_events", "replay_events"]
