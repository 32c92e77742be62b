"""The model's layer of a night: per-epoch stage probabilities, kept apart from expert labels.

The expert hypnogram is never written by the model. This layer holds what the model said
(probabilities over :data:`STAGES`, NaN rows where it has not run yet) and answers the
questions the scorer asks of it: the model's stage and confidence per epoch, where it
disagrees with the expert, which epochs to review first, and how well it agrees overall.

With a night-context model (:class:`~.sequence.StageSequenceModel`, from the model folder)
and context on, every answer the layer gives is the context posterior: what the scorer sees,
accepts and is asked to review is one consistent thing. :attr:`epoch_proba` keeps each
epoch's answer from its own image. Pure numpy; views subscribe to change events like they
do on a :class:`Hypnogram`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eegvlm_desktop.core.errors import check_option
from eegvlm_desktop.core.events import ChangeNotifier
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.sequence import StageSequenceModel

#: Review orders: least confident first; disagreements with the expert first, then the rest.
REVIEW_ORDERS: tuple[str, ...] = ("uncertainty", "disagreement")


class ModelLayer(ChangeNotifier):
    """Stage probabilities of one model run over a night.

    Parameters
    ----------
    n_epochs : int
        Epochs of the night (the hypnogram's length).
    model_name : str
        Name (and version) of the model, shown to the user and logged when accepting.
    """

    def __init__(self, n_epochs: int, model_name: str = "") -> None:
        if not isinstance(n_epochs, (int, np.integer)) or n_epochs < 0:
            raise ValueError(f"The 'n_epochs' parameter must be an integer >= 0, "
                             f"but got {n_epochs!r}.")
        self.model_name = model_name
        self._proba = np.full((int(n_epochs), len(STAGES)), np.nan)
        self._sequence: StageSequenceModel | None = None
        self._context = True
        self._decoded: np.ndarray | None = None  # context posterior, recomputed lazily
        self._init_listeners()

    # ------------------------------------------------------------------ data
    def __len__(self) -> int:
        return self._proba.shape[0]

    @property
    def proba(self) -> np.ndarray:
        """Read-only ``(n_epochs, 5)`` of what the layer answers with (context posterior when
        :attr:`context_active`); NaN rows where the model has not run."""
        view = self._effective().view()
        view.flags.writeable = False
        return view

    @property
    def epoch_proba(self) -> np.ndarray:
        """Read-only ``(n_epochs, 5)``: each epoch's answer from its own image alone."""
        view = self._proba.view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ night context
    @property
    def sequence(self) -> StageSequenceModel | None:
        return self._sequence

    @property
    def context(self) -> bool:
        """Whether night context is wanted (it applies only with a sequence model)."""
        return self._context

    @property
    def context_active(self) -> bool:
        return self._context and self._sequence is not None

    def set_sequence(self, sequence: StageSequenceModel | None,
                     context: bool | None = None) -> None:
        """Use the loaded model's night-context model (None: it has none); ``context``
        also sets :attr:`context`, in the same single notification."""
        if sequence is not None and not isinstance(sequence, StageSequenceModel):
            raise TypeError(f"The 'sequence' parameter must be a StageSequenceModel or None, "
                            f"but got {type(sequence).__name__}.")
        self._sequence = sequence
        if context is not None:
            self._context = bool(context)
        self._decoded = None
        self._notify(list(range(len(self))))

    def set_context(self, on: bool) -> None:
        """Turn night context on or off (every view updates)."""
        self._context = bool(on)
        self._decoded = None
        self._notify(list(range(len(self))))

    def _effective(self) -> np.ndarray:
        if not self.context_active:
            return self._proba
        if self._decoded is None:
            # ~25 ms for a 24-h night: done once per change, not once per question.
            self._decoded = self._sequence.smooth(self._proba)
        return self._decoded

    @property
    def done(self) -> np.ndarray:
        """Boolean mask of the epochs that have probabilities."""
        return np.isfinite(self._proba).all(axis=1)

    @property
    def n_done(self) -> int:
        return int(self.done.sum())

    def set_proba(self, indices: Sequence[int], proba: np.ndarray) -> None:
        """Store probabilities for ``indices`` (rows over STAGES) and notify listeners."""
        idx = np.asarray(indices, dtype=int).ravel()
        p = np.asarray(proba, dtype=float)
        if p.shape != (len(idx), len(STAGES)):
            raise ValueError(f"The 'proba' parameter must have shape ({len(idx)}, "
                             f"{len(STAGES)}), but got {p.shape}.")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"Epoch indices must be in 0..{len(self) - 1}.")
        self._proba[idx] = p
        self._decoded = None
        # With context, new evidence moves its neighbours' answers too.
        self._notify(list(range(len(self))) if self.context_active else idx.tolist())

    def copy(self) -> ModelLayer:
        """A snapshot without listeners (for a background job while this one keeps changing)."""
        other = ModelLayer(len(self), self.model_name)
        other._proba = self._proba.copy()
        other._sequence, other._context = self._sequence, self._context
        return other

    def clear(self, model_name: str | None = None) -> None:
        """Forget every result (a new model or a re-run): stale results never mix in."""
        if model_name is not None:
            self.model_name = model_name
        self._proba[:] = np.nan
        self._decoded = None
        self._notify(list(range(len(self))))

    def stage(self, index: int) -> str | None:
        """The model's stage for one epoch, or None when it has not run there."""
        row = self._effective()[index]
        return None if not np.isfinite(row).all() else STAGES[int(row.argmax())]

    def stages(self) -> np.ndarray:
        """Model stage per epoch as strings; ``''`` where the model has not run."""
        out = np.full(len(self), "", dtype=object)
        done = self.done
        out[done] = np.array(STAGES, dtype=object)[self._effective()[done].argmax(axis=1)]
        return out

    def confidence(self) -> np.ndarray:
        """Highest probability per epoch (NaN where not run)."""
        return self._effective().max(axis=1)  # a NaN row stays NaN

    # ------------------------------------------------------------------ vs the expert
    def disagreements(self, expert: Sequence[str]) -> np.ndarray:
        """Mask of epochs where both scored a sleep stage and they differ."""
        exp = np.asarray(expert, dtype=object)
        if len(exp) != len(self):
            raise ValueError(f"The 'expert' parameter must have {len(self)} labels, "
                             f"but got {len(exp)}.")
        model = self.stages()
        scored = np.isin(exp, STAGES)
        return self.done & scored & (model != exp)

    def review_queue(self, expert: Sequence[str], order: str = "disagreement") -> list[int]:
        """Epochs to review, most worth a look first.

        ``'uncertainty'``: every epoch the model ran on, least confident first.
        ``'disagreement'``: epochs where model and expert differ (least confident first),
        then the remaining epochs by uncertainty.
        """
        check_option("order", order, REVIEW_ORDERS)
        conf = self.confidence()
        done = np.flatnonzero(self.done)
        by_conf = done[np.argsort(conf[done], kind="stable")]
        if order == "uncertainty":
            return by_conf.tolist()
        dis = self.disagreements(expert)
        return [int(i) for i in by_conf if dis[i]] + [int(i) for i in by_conf if not dis[i]]

    def reason(self, index: int, expert: str | None = None) -> str:
        """One line saying why an epoch is in the review queue."""
        row = self._effective()[index]
        if not np.isfinite(row).all():
            return "not scored by the model yet"
        order = np.argsort(row)[::-1]
        first, second = STAGES[order[0]], STAGES[order[1]]
        text = f"{first} {row[order[0]]:.0%}, {second} {row[order[1]]:.0%}"
        alone = self._proba[index]
        if self.context_active and STAGES[int(alone.argmax())] != first:
            text += f" in context; alone {STAGES[int(alone.argmax())]} {alone.max():.0%}"
        if expert in STAGES and expert != first:
            text += f"; expert says {expert}"
        return text

    def agreement(self, expert: Sequence[str]) -> dict[str, Any] | None:
        """Model vs expert metrics over the epochs both scored; None when there are none."""
        from eegvlm_desktop.core.staging.metrics import stage_metrics

        exp = np.asarray(expert, dtype=object)
        both = self.done & np.isin(exp, STAGES)
        if not both.any():
            return None
        return stage_metrics(list(exp[both]), list(self.stages()[both]))

    # ------------------------------------------------------------------ events
