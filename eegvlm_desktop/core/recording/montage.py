"""Choose one channel per model role (frontal/central/occipital EEG, EOG, chin EMG).

The rendered image (:mod:`.rendering`) and the measured evidence (:mod:`.evidence`) are built
from *roles*, not channel names, so a model trained on Sleep-EDF (Fpz-Cz, Pz-Oz) can be applied
zero-shot to recordings from other labs (C3-M2, F4-M1, DREAMS' C3-A1...). Pure functions, no
I/O: the inputs are a :class:`~eegvlm_desktop.core.recording.recording.Recording`'s ``ch_names`` and
``ch_types``.
"""
from __future__ import annotations

import re
from typing import Sequence

#: Model roles, in the fixed order of the image's bands (top to bottom).
ROLES: tuple[str, ...] = ("eeg_frontal", "eeg_central", "eeg_occipital", "eog", "emg")
EEG_ROLES: tuple[str, ...] = ROLES[:3]

# Per EEG role, electrode patterns matched against the *first* electrode of a derivation
# (Fpz-Cz is frontal, Pz-Oz occipital), best first. The list position is the rank, so
# F4-M1 beats Fp1 for the frontal role, as in the AASM recommended montage.
_EEG_PATTERNS: dict[str, tuple[str, ...]] = {
    "eeg_frontal": (r"FPZ", r"F[34]", r"FZ", r"FP[12]", r"AF\w*", r"F[1-9]"),
    "eeg_central": (r"C[34]", r"CZ", r"C[1-6]", r"FC\w*", r"CP\w*"),
    "eeg_occipital": (r"O[12]", r"OZ", r"PZ", r"P[34]", r"PO\w*", r"P[1-9]"),
}
# Contralateral mastoid/ear references (C3-M2, C4-A1) are the AASM derivations: an
# ipsilateral one (C3-A1) is still accepted, ranked just after.
_CONTRA = {"1": "2", "3": "2", "5": "2", "7": "2", "2": "1", "4": "1", "6": "1", "8": "1"}
_REF = re.compile(r"^[AM]([12])$")
# Sleep-EDF writes "EEG Fpz-Cz", DREAMS "EOG1-A1", others "C3:M2" or "C3_A2".
_TYPE_PREFIX = re.compile(r"^(EEG|EOG|EMG)[\s_:]+", re.IGNORECASE)
_SPLIT = re.compile(r"\s*[-:/_]\s*|\s+")

# EOG: horizontal/left first (one bipolar horizontal channel is the common case), then any.
_EOG_PATTERNS: tuple[str, ...] = (r"HORI|HEOG|LOC|E1\b|EOG.?L|L.?EOG|EOG1", r"EOG|ROC|E2\b")
# EMG: chin only. Leg (tibial) EMG says nothing about sleep stage, so it never fills the role.
_EMG_CHIN = re.compile(r"CHIN|SUBMENT|MENT|EMG1|EMG\b(?!.*(LEG|TIB|LAT|RAT))", re.IGNORECASE)
_EMG_LEG = re.compile(r"LEG|TIB|\bLAT\b|\bRAT\b", re.IGNORECASE)
_EOG_NAME = re.compile(r"EOG|\b(LOC|ROC)\b|^E[12]\b", re.IGNORECASE)

# When an EEG role has no channel of its own, the nearest role's channel stands in
# (central <- frontal: Fpz-Cz includes Cz; occipital <- central), so every EEG band is drawn.
_NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "eeg_frontal": ("eeg_central", "eeg_occipital"),
    "eeg_central": ("eeg_frontal", "eeg_occipital"),
    "eeg_occipital": ("eeg_central", "eeg_frontal"),
}


def _electrodes(name: str) -> list[str]:
    """Upper-case electrode names of a derivation: 'EEG Fpz-Cz' -> ['FPZ', 'CZ']."""
    bare = _TYPE_PREFIX.sub("", name.strip())
    return [p for p in _SPLIT.split(bare.upper()) if p]


def _eeg_rank(role: str, name: str) -> int | None:
    """Rank (lower is better) of an EEG channel for ``role``; None if it does not fit."""
    parts = _electrodes(name)
    if not parts:
        return None
    first = parts[0]
    for rank, pattern in enumerate(_EEG_PATTERNS[role]):
        if re.fullmatch(pattern, first):
            score = 2 * rank
            side = first[-1]
            ref = _REF.match(parts[1]) if len(parts) > 1 else None
            if ref and _CONTRA.get(side) not in (None, ref.group(1)):
                score += 1  # ipsilateral reference: usable, slightly worse
            return score
    return None


def _pattern_rank(patterns: Sequence[str], name: str) -> int | None:
    for rank, pattern in enumerate(patterns):
        if re.search(pattern, name, re.IGNORECASE):
            return rank
    return None


def _check_lists(ch_names: Sequence[str], ch_types: Sequence[str]) -> None:
    if len(ch_names) != len(ch_types):
        raise ValueError("Invalid value for the 'ch_types' parameter: it must have one type per "
                         f"channel name ({len(ch_names)}), but got {len(ch_types)} types instead.")


def pick_roles(ch_names: Sequence[str], ch_types: Sequence[str], *,
               fill_missing: bool = True) -> dict[str, int | None]:
    """Choose one channel index per model role.

    Parameters
    ----------
    ch_names, ch_types : sequence of str
        A recording's channel names and types ('eeg', 'eog', 'emg', ...), same length.
    fill_missing : bool
        If True (default), an EEG role without a matching electrode is filled by another EEG
        channel: first an EEG channel no role uses yet, then the channel of the nearest role.
        So a single-channel C3-A1 recording fills all three EEG roles with C3-A1.

    Returns
    -------
    dict
        ``{role: channel index or None}`` for every role in :data:`ROLES`, in that order.
    """
    _check_lists(ch_names, ch_types)
    roles: dict[str, int | None] = dict.fromkeys(ROLES)
    eeg = [i for i, t in enumerate(ch_types) if t == "eeg"]
    for role in EEG_ROLES:
        ranked = [(r, i) for i in eeg if (r := _eeg_rank(role, ch_names[i])) is not None]
        if ranked:
            roles[role] = min(ranked)[1]  # ties: the first channel in the file wins

    eog = [(r, i) for i, (n, t) in enumerate(zip(ch_names, ch_types))
           if (t == "eog" or (t != "eeg" and _EOG_NAME.search(n)))
           and (r := _pattern_rank(_EOG_PATTERNS, n)) is not None]
    if not eog:  # typed EOG with an unusual name ("Horizontal")
        eog = [(9, i) for i, t in enumerate(ch_types) if t == "eog"]
    roles["eog"] = min(eog)[1] if eog else None

    emg = [(0 if _EMG_CHIN.search(n) else 1, i)
           for i, (n, t) in enumerate(zip(ch_names, ch_types))
           if t == "emg" and not _EMG_LEG.search(n)]
    roles["emg"] = min(emg)[1] if emg else None

    if fill_missing and eeg:
        for role in EEG_ROLES:
            if roles[role] is not None:
                continue
            unused = [i for i in eeg if i not in roles.values()]
            near = [roles[n] for n in _NEIGHBOURS[role] if roles[n] is not None]
            roles[role] = (unused or near or eeg)[0]
    return roles


def is_substitute(role: str, name: str) -> bool:
    """Whether channel ``name`` fills EEG ``role`` only as a stand-in (e.g. C3-A1 as frontal)."""
    return role in EEG_ROLES and _eeg_rank(role, name) is None


def describe_roles(roles: dict[str, int | None], ch_names: Sequence[str]) -> list[str]:
    """One human-readable line per role, for reports and the model-input dialog.

    Parameters
    ----------
    roles : dict
        Output of :func:`pick_roles`.
    ch_names : sequence of str
        The same channel names given to :func:`pick_roles`.

    Returns
    -------
    list of str
        E.g. ``"EEG central: EEG Fpz-Cz (stand-in, no central electrode)"``.
    """
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"Invalid value for the 'roles' parameter: keys must be among {ROLES}, "
                         f"but got {unknown} instead.")
    lines = []
    for role in ROLES:
        label = role.replace("eeg_", "EEG ").replace("eog", "EOG").replace("emg", "chin EMG")
        idx = roles.get(role)
        if idx is None:
            lines.append(f"{label}: none (drawn as an empty band)")
            continue
        name = ch_names[idx]
        note = ""
        if is_substitute(role, name):
            note = f" (stand-in, no {role.removeprefix('eeg_')} electrode)"
        lines.append(f"{label}: {name}{note}")
    return lines
