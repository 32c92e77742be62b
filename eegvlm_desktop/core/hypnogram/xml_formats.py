"""Read the XML hypnograms of the NSRR and of Compumedics Profusion.

NSRR files (``<ScoredEvents>``) list stage events with a start and a duration; Profusion
files (``<SleepStages>``) list one integer per epoch. :func:`read_xml` turns both into the
stage events that :mod:`.read` lays on the epoch grid, so the same checks and
messages apply as for every other format. This module does not import :mod:`.read`
(it imports this one).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from eegvlm_desktop.core.errors import HypnogramError
from eegvlm_desktop.core.stages import UNS, to_aasm

__all__ = ["XmlStages", "read_xml"]

# NSRR EventConcept codes ('Stage 4 sleep|4'); 6 = movement, 9 = unscored.
_NSRR_CODES = {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "N3", "5": "R", "6": UNS, "9": UNS}
# Compumedics Profusion <SleepStage> integers; anything else (9 etc.) is unscored.
_PROFUSION = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "N3", 5: "R"}


@dataclass
class XmlStages:
    """What :func:`read_xml` found.

    Attributes
    ----------
    events : list of (float, float or None, str, str, None)
        ``(onset_s, duration_s, AASM label, source label, provenance)``, as read.py's
        readers produce them.
    mapping : list of (str, str)
        Source label -> AASM label.
    notes : list of str
        How the file was read, for the user.
    skipped : list of str
        NSRR stage events whose concept is not a sleep stage (ignored).
    epoch_length : float or None
        The file's ``<EpochLength>``, when it has one.
    """

    events: list[tuple[float, float | None, str, str, str | None]] = field(default_factory=list)
    mapping: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    epoch_length: float | None = None


def read_xml(data: bytes, name: str) -> XmlStages:
    """Stage events of an NSRR or Compumedics Profusion XML file; raise HypnogramError."""
    # xml.etree would expand internal entities ('billion laughs'); hypnograms never need them.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise HypnogramError(f"'{name}' declares a DTD or entities, which are not accepted.")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise HypnogramError(f"'{name}' is not valid XML: {err}.") from err
    for el in root.iter():  # drop namespaces: some exporters add one, the tags are the same
        el.tag = el.tag.rsplit("}", 1)[-1]

    def num(el: ET.Element | None, what: str) -> float | None:
        if el is None or not (el.text or "").strip():
            return None
        try:
            return float(el.text)
        except ValueError:
            raise HypnogramError(f"'{name}': {what} {el.text!r} is not a number.") from None

    parsed = XmlStages(epoch_length=num(root.find("EpochLength"), "EpochLength"))
    stages = root.find(".//SleepStages")
    if stages is not None:  # Compumedics Profusion
        ep = parsed.epoch_length or 30.0
        for i, el in enumerate(stages.findall("SleepStage")):
            code = num(el, "SleepStage")
            code = int(code) if code is not None else -1
            src = f"Profusion stage {code}"
            parsed.events.append((i * ep, ep, _PROFUSION.get(code, UNS), src, None))
        parsed.notes.append("Read as Compumedics Profusion XML (0 W, 1-3 N1-N3, 4 -> N3, "
                            "5 REM, other codes unscored).")
    elif root.find(".//ScoredEvents") is not None:  # NSRR
        for ev in root.iter("ScoredEvent"):
            if not (ev.findtext("EventType") or "").strip().lower().startswith("stages"):
                continue
            concept = (ev.findtext("EventConcept") or "").strip()
            text, _, code = concept.rpartition("|")
            aasm = _NSRR_CODES.get(code.strip()) or to_aasm(text or concept)
            if aasm is None:
                parsed.skipped.append(concept)
                continue
            onset = num(ev.find("Start"), "Start")
            if onset is None:
                raise HypnogramError(f"'{name}': the stage event {concept!r} has no Start.")
            parsed.events.append((onset, num(ev.find("Duration"), "Duration"), aasm, concept,
                                  None))
        parsed.notes.append("Read as NSRR XML.")
    else:
        raise HypnogramError(f"'{name}' is XML but neither an NSRR (ScoredEvents) nor a "
                             f"Compumedics Profusion (SleepStages) hypnogram.")
    parsed.mapping = sorted({(e[3], e[2]) for e in parsed.events})
    return parsed
