"""The stage vocabulary: AASM stages as strings, colours, and R&K -> AASM mapping.

Stages are always strings (YASA's convention), never bare integers, so a hypnogram
cannot silently confuse R&K "4" with AASM REM.
"""
from __future__ import annotations

import re

#: Scorable stages, in the order used for probabilities (columns of ``proba``).
STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "R")
#: Unscored epoch and artefact epoch.
UNS = "UNS"
ART = "ART"
ALL_LABELS: tuple[str, ...] = STAGES + (ART, UNS)

#: Display order of the hypnogram, top to bottom (W on top, REM just below).
HYPNO_ORDER: tuple[str, ...] = ("W", "R", "N1", "N2", "N3")

#: Colours (hex) per stage, close to the conventions of YASA / Lunascope plots.
STAGE_COLORS: dict[str, str] = {
    "W": "#e8a33d",
    "R": "#d1495b",
    "N1": "#7cc4e8",
    "N2": "#3a7ecf",
    "N3": "#1b3a8a",
    "ART": "#9a9a9a",
    "UNS": "#d9d9d9",
}

#: YASA integer codes (yasa.hypno_str_to_int): W=0, N1=1, N2=2, N3=3, R=4, ART=-1, UNS=-2.
YASA_INT: dict[str, int] = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4, ART: -1, UNS: -2}
YASA_INT_INV: dict[int, str] = {v: k for k, v in YASA_INT.items()}

# Map of normalised source labels -> AASM label. Keys are lower-cased, with the usual
# prefixes ("sleep stage ", "stage ") removed by ``normalise_label``.
_LABEL_MAP: dict[str, str] = {
    "w": "W", "wake": "W", "awake": "W", "0": "W",
    "n1": "N1", "1": "N1", "s1": "N1",
    "n2": "N2", "2": "N2", "s2": "N2",
    "n3": "N3", "3": "N3", "s3": "N3", "4": "N3", "s4": "N3", "n4": "N3", "sws": "N3",
    "r": "R", "rem": "R", "5": "R",
    "mt": UNS, "movement time": UNS, "movement": UNS, "?": UNS, "uns": UNS,
    "unscored": UNS, "unknown": UNS, "nan": UNS, "": UNS, "-2": UNS,
    "art": ART, "artefact": ART, "artifact": ART, "-1": ART,
}

_PREFIX = re.compile(r"^(sleep[\s_-]*stage|stage)[\s_:-]*", re.IGNORECASE)


def normalise_label(label: str) -> str:
    """Lower-case a source label and strip 'Sleep stage' / 'Stage' prefixes."""
    return _PREFIX.sub("", str(label).strip()).strip().lower()


def to_aasm(label: str) -> str | None:
    """Map one source stage label (AASM, R&K, Sleep-EDF, NSRR) to an AASM label.

    Returns ``None`` when the label is not a sleep stage at all (e.g. "Lights off"),
    so importers can skip non-stage annotations instead of guessing.
    """
    return _LABEL_MAP.get(normalise_label(label))


def describe_mapping(source_labels: list[str]) -> list[tuple[str, str]]:
    """The mapping applied to a set of source labels, for showing to the user.

    Returns pairs ``(source label, AASM label)``, sorted, one per distinct label that
    maps to a stage, so the import dialog can say e.g. "Sleep stage 4 -> N3".
    """
    seen: dict[str, str] = {}
    for lab in source_labels:
        aasm = to_aasm(lab)
        if aasm is not None:
            seen[str(lab)] = aasm
    return sorted(seen.items())
