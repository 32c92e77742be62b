"""The Hypnogram: one stage label per epoch, with provenance, probabilities and change events.

Modelled on YASA's ``Hypnogram`` (string stages, a fixed vocabulary plus ART/UNS, ``proba``
aligned with the labels, a scorer) with two additions the desktop app needs:

* per-epoch **provenance** (who set this label: an expert, the model, an imported file), and
* **change events**: views subscribe and redraw only the epochs that changed.

The model's probabilities are kept when an expert relabels an epoch, so a later fine-tuning
export can show both the model's original answer and the expert's correction.
This module is Qt-free; the GUI bridges ``subscribe`` to a Qt signal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from eegvlm_desktop.core.events import ChangeNotifier
from eegvlm_desktop.core.stages import ALL_LABELS, STAGES, UNS, YASA_INT

#: Who set an epoch's label.
#: "accepted": the expert took the model's stage for that epoch (an expert action, logged).
PROVENANCES: tuple[str, ...] = ("none", "import", "expert", "model", "accepted")


@dataclass(frozen=True)
class Change:
    """One label change: epoch ``index`` went from ``old`` to ``new``, set by ``source``."""

    index: int
    old: str
    new: str
    source: str
    old_source: str = "none"




class Hypnogram(ChangeNotifier):
    """Stages of a recording on a regular epoch grid.

    Parameters
    ----------
    stages : sequence of str
        One label per epoch, from :data:`~eegvlm_desktop.core.stages.ALL_LABELS`.
    epoch_length : float
        Epoch duration in seconds (30 for AASM scoring).
    start : float
        Onset of the first epoch, in seconds from the start of the recording.
    scorer : str
        Who scored it (a person's name, a file name or a model name).
    proba : array of shape (n_epochs, 5) or None
        Model probabilities over :data:`STAGES`; rows may be NaN where no model ran.
    provenance : sequence of str or None
        Per-epoch origin of the label, from :data:`PROVENANCES`. Default: ``"import"`` for
        scored epochs and ``"none"`` for unscored ones.
    """

    def __init__(
        self,
        stages: Sequence[str],
        epoch_length: float = 30.0,
        start: float = 0.0,
        scorer: str = "",
        proba: np.ndarray | None = None,
        provenance: Sequence[str] | None = None,
    ) -> None:
        stages = [str(s) for s in stages]
        bad = sorted({s for s in stages if s not in ALL_LABELS})
        if bad:
            raise ValueError(
                f"Invalid value for the 'stages' parameter. Allowed values are "
                f"{', '.join(ALL_LABELS)}, but got {', '.join(map(repr, bad))}."
            )
        if not epoch_length > 0:
            raise ValueError(f"'epoch_length' must be > 0 seconds, got {epoch_length!r}.")
        self._stages = np.array(stages, dtype=object)
        self.epoch_length = float(epoch_length)
        self.start = float(start)
        self.scorer = str(scorer)
        n = len(stages)
        if proba is None:
            self._proba = np.full((n, len(STAGES)), np.nan)
        else:
            proba = np.asarray(proba, dtype=float)
            if proba.shape != (n, len(STAGES)):
                raise ValueError(
                    f"'proba' must have shape ({n}, {len(STAGES)}) (epochs x stages "
                    f"{', '.join(STAGES)}), got {proba.shape}."
                )
            self._proba = proba.copy()
        if provenance is None:
            provenance = ["none" if s == UNS else "import" for s in stages]
        provenance = [str(p) for p in provenance]
        if len(provenance) != n:
            raise ValueError(f"'provenance' must have {n} entries, got {len(provenance)}.")
        badp = sorted({p for p in provenance if p not in PROVENANCES})
        if badp:
            raise ValueError(
                f"Invalid value for the 'provenance' parameter. Allowed values are "
                f"{', '.join(PROVENANCES)}, but got {', '.join(map(repr, badp))}."
            )
        self._provenance = np.array(provenance, dtype=object)
        self._init_listeners()

    # ------------------------------------------------------------------ construction
    @classmethod
    def unscored(cls, n_epochs: int, epoch_length: float = 30.0, start: float = 0.0,
                 scorer: str = "") -> "Hypnogram":
        """A hypnogram of ``n_epochs`` unscored epochs."""
        return cls([UNS] * int(n_epochs), epoch_length, start, scorer)

    def copy(self) -> "Hypnogram":
        """A deep copy without the listeners."""
        return Hypnogram(list(self._stages), self.epoch_length, self.start, self.scorer,
                         self._proba.copy(), list(self._provenance))

    # ------------------------------------------------------------------ read access
    def __len__(self) -> int:
        return len(self._stages)

    @property
    def n_epochs(self) -> int:
        return len(self._stages)

    @property
    def stages(self) -> np.ndarray:
        """Read-only view of the labels (object array of str)."""
        view = self._stages.view()
        view.flags.writeable = False
        return view

    @property
    def provenance(self) -> np.ndarray:
        view = self._provenance.view()
        view.flags.writeable = False
        return view

    @property
    def proba(self) -> np.ndarray:
        view = self._proba.view()
        view.flags.writeable = False
        return view

    def __getitem__(self, index: int) -> str:
        return str(self._stages[index])

    @property
    def duration(self) -> float:
        return self.n_epochs * self.epoch_length

    def onset(self, index: int) -> float:
        """Onset of epoch ``index`` in seconds from the recording start."""
        return self.start + index * self.epoch_length

    def epoch_at(self, t: float) -> int:
        """The epoch containing time ``t`` (seconds from recording start), clamped."""
        i = int(np.floor((t - self.start) / self.epoch_length))
        return min(max(i, 0), max(self.n_epochs - 1, 0))

    def n_scored(self) -> int:
        return int(np.sum(self._stages != UNS))

    def to_yasa_int(self) -> np.ndarray:
        """Integer codes as YASA uses them (W=0 ... R=4, ART=-1, UNS=-2)."""
        return np.array([YASA_INT[s] for s in self._stages], dtype=int)

    def events(self) -> list[tuple[float, float, str]]:
        """Runs of equal stages as ``(onset_s, duration_s, stage)``, unscored runs included."""
        out: list[tuple[float, float, str]] = []
        i = 0
        n = self.n_epochs
        while i < n:
            j = i + 1
            while j < n and self._stages[j] == self._stages[i]:
                j += 1
            out.append((self.onset(i), (j - i) * self.epoch_length, str(self._stages[i])))
            i = j
        return out

    # ------------------------------------------------------------------ mutation

    def set_stages(self, indices: Iterable[int], stage: str | Sequence[str],
                   source: str = "expert") -> list[Change]:
        """Set labels and return the changes actually made (unchanged epochs are skipped).

        ``stage`` is one label for all ``indices`` or one label per index. ``source`` is
        the provenance recorded for the new labels.
        """
        idx = [int(i) for i in indices]
        labels = [stage] * len(idx) if isinstance(stage, str) else [str(s) for s in stage]
        if len(labels) != len(idx):
            raise ValueError(f"Got {len(idx)} indices but {len(labels)} stages.")
        if source not in PROVENANCES:
            raise ValueError(
                f"Invalid value for the 'source' parameter. Allowed values are "
                f"{', '.join(PROVENANCES)}, but got {source!r}."
            )
        # Validate everything before touching anything: a half-applied batch would be a
        # change nobody was told about (no event, no undo entry, no save).
        for i, new in zip(idx, labels):
            if new not in ALL_LABELS:
                raise ValueError(
                    f"Invalid value for the 'stage' parameter. Allowed values are "
                    f"{', '.join(ALL_LABELS)}, but got {new!r}."
                )
            if not 0 <= i < self.n_epochs:
                raise IndexError(f"Epoch {i} is out of range 0..{self.n_epochs - 1}.")
        changes: list[Change] = []
        for i, new in zip(idx, labels):
            new_source = "none" if new == UNS else source
            old, old_source = str(self._stages[i]), str(self._provenance[i])
            if old == new and old_source == new_source:
                continue
            self._stages[i] = new
            self._provenance[i] = new_source
            changes.append(Change(i, old, new, new_source, old_source))
        if changes:
            self._notify([c.index for c in changes])
        return changes

    def set_stage(self, index: int, stage: str, source: str = "expert") -> Change | None:
        """Set one label; returns the change or ``None`` if nothing changed."""
        changes = self.set_stages([index], stage, source)
        return changes[0] if changes else None

    def apply_changes(self, changes: Sequence[Change], reverse: bool = False) -> list[Change]:
        """Re-apply (or, with ``reverse``, undo) recorded changes, restoring provenance too."""
        seq = reversed(changes) if reverse else changes
        made: list[Change] = []
        for c in seq:
            stage, src = (c.old, c.old_source) if reverse else (c.new, c.source)
            old, old_src = str(self._stages[c.index]), str(self._provenance[c.index])
            self._stages[c.index] = stage
            self._provenance[c.index] = src
            made.append(Change(c.index, old, stage, src, old_src))
        if made:
            self._notify(sorted({c.index for c in made}))
        return made

    def set_proba(self, indices: Sequence[int], proba: np.ndarray) -> None:
        """Store model probabilities (rows over :data:`STAGES`) without touching labels."""
        proba = np.asarray(proba, dtype=float).reshape(len(indices), len(STAGES))
        self._proba[list(indices)] = proba
        self._notify([int(i) for i in indices])

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """JSON-ready dict; :meth:`from_dict` round-trips it exactly (NaN -> None)."""
        proba = None
        if not np.all(np.isnan(self._proba)):
            # Vectorised NaN -> None: a per-value loop costs ~11 ms on a night and this runs
            # on every keypress (the sidecar is rewritten after each label).
            obj = self._proba.astype(object)
            obj[np.isnan(self._proba)] = None
            proba = obj.tolist()
        return {
            "epoch_length": self.epoch_length,
            "start": self.start,
            "scorer": self.scorer,
            "stage_vocabulary": list(ALL_LABELS),
            "stages": [str(s) for s in self._stages],
            "provenance": [str(p) for p in self._provenance],
            "proba": proba,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Hypnogram":
        proba = d.get("proba")
        if proba is not None:
            proba = np.array([[np.nan if v is None else v for v in row] for row in proba],
                             dtype=float).reshape(len(d["stages"]), len(STAGES))
        return cls(d["stages"], d.get("epoch_length", 30.0), d.get("start", 0.0),
                   d.get("scorer", ""), proba, d.get("provenance"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hypnogram):
            return NotImplemented
        return (self.epoch_length == other.epoch_length and self.start == other.start
                and list(self._stages) == list(other._stages)
                and list(self._provenance) == list(other._provenance)
                and np.array_equal(self._proba, other._proba, equal_nan=True))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"<Hypnogram {self.n_epochs} epochs x {self.epoch_length:g} s, "
                f"{self.n_scored()} scored, scorer={self.scorer!r}>")
