"""Night context for the per-epoch answers: a stage-transition model decoded forward-backward.

The model stages every 30-s epoch from its own image. A scorer never does: the AASM rules
lean on the neighbours (N2 continues until an arousal, a lone N1 epoch inside long wake is
wake, R persists). This module adds that context the classical way, as a hybrid HMM:

* the hidden state is the stage, with a 5 x 5 transition matrix counted from the training
  hypnograms (consecutive epochs only, plus a pseudo-count so no transition is impossible);
* the per-epoch probabilities of the direct answer, divided by the class prior they were
  trained with, are the (scaled) emission likelihoods; a temperature fitted on held-out
  answers (:func:`fit_temperature`) first softens them, because a network trained to near-zero
  loss on one night is overconfident, and an overconfident epoch cannot be outvoted by its
  neighbours however unlikely its stage is in context;
* the forward-backward algorithm gives each epoch's stage posterior given the whole night.

It is a few lines of numpy: neither mne, scipy nor yasa decode a posterior-based HMM, and
hmmlearn wants parametric emissions rather than a classifier's posteriors. No torch, no Qt.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.stages import STAGES

#: Stored in the model folder's manifest; bump when the meaning of the fields changes.
SEQUENCE_FORMAT = 1


def _check_matrix(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.shape != shape or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"The {name!r} parameter must be a finite, non-negative array of shape "
                         f"{shape}, but got shape {arr.shape} "
                         f"({'finite' if np.all(np.isfinite(arr)) else 'with NaN/inf'}).")
    return arr


def _stage_index(stages: Sequence[str]) -> np.ndarray:
    bad = sorted({s for s in stages if s not in STAGES})
    if bad:
        raise ValueError(f"The 'stages' parameter must hold only {', '.join(STAGES)}, "
                         f"but got {bad!r}.")
    return np.array([STAGES.index(s) for s in stages], dtype=int)


def transition_counts(stages: Sequence[str], epochs: Sequence[int] | None = None) -> np.ndarray:
    """Count stage transitions between *consecutive* epochs.

    Parameters
    ----------
    stages : sequence of str
        Expert stage of each epoch, in time order.
    epochs : sequence of int, optional
        Epoch number of each stage in the recording. Pairs whose numbers are not adjacent
        (a removed movement epoch, the seam between two cross-validation blocks, two nights)
        are not counted. Without it, every neighbouring pair counts.

    Returns
    -------
    ndarray, shape (5, 5)
        ``counts[a, b]`` = how often stage ``a`` was followed by stage ``b``.
    """
    idx = _stage_index(stages)
    ep = np.arange(len(idx)) if epochs is None else np.asarray(epochs, dtype=int)
    if ep.shape != idx.shape:
        raise ValueError(f"The 'epochs' parameter must have one number per stage "
                         f"({len(idx)}), but got {ep.size}.")
    counts = np.zeros((len(STAGES), len(STAGES)))
    keep = np.diff(ep) == 1
    np.add.at(counts, (idx[:-1][keep], idx[1:][keep]), 1.0)
    return counts


#: Search range of :func:`fit_temperature` (a temperature of 1 leaves the answers as they are).
TEMPERATURE_RANGE = (0.25, 20.0)


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``proba ** (1 / temperature)``, renormalised per row (NaN rows stay NaN)."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"The 'temperature' parameter must be a finite number > 0, but got "
                         f"{temperature!r}.")
    logp = np.log(np.clip(np.asarray(proba, dtype=float), 1e-12, None)) / temperature
    logp -= np.max(logp, axis=1, keepdims=True)
    q = np.exp(logp)
    return q / q.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, stages: Sequence[str]) -> float:
    """The temperature that makes held-out answers best calibrated (least negative log-lik.).

    Parameters
    ----------
    proba : ndarray (n, 5)
        Direct-answer probabilities of epochs the model never trained on (e.g. the
        out-of-fold answers of a cross-validation); NaN rows are ignored.
    stages : sequence of str
        The expert's stage of each row.

    Returns
    -------
    float
        In :data:`TEMPERATURE_RANGE`; > 1 means the answers were overconfident.
    """
    p = np.asarray(proba, dtype=float)
    y = _stage_index(stages)
    if p.ndim != 2 or p.shape != (len(y), len(STAGES)):
        raise ValueError(f"The 'proba' parameter must have shape ({len(y)}, {len(STAGES)}) "
                         f"(one row per stage), but got {p.shape}.")
    ok = np.all(np.isfinite(p), axis=1)
    if not ok.any():
        raise ValueError("The 'proba' parameter has no finite row to fit a temperature on.")
    p, y = p[ok], y[ok]
    from scipy.optimize import minimize_scalar  # only here: the app's start-up never needs it

    def nll(log_t: float) -> float:
        return -float(np.mean(np.log(temper(p, float(np.exp(log_t)))[np.arange(len(y)), y]
                                     + 1e-12)))

    lo, hi = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(nll, bounds=(lo, hi), method="bounded",
                                        options={"xatol": 1e-3}).x))


@dataclass(frozen=True)
class StageSequenceModel:
    """Stage-transition matrix plus the class prior the per-epoch answers were trained with.

    Attributes
    ----------
    transitions : ndarray (5, 5)
        Row-stochastic: ``transitions[a, b]`` = P(next epoch is b | this epoch is a).
    prior : ndarray (5,)
        The stage frequencies the direct answer saw in training (with stage balancing these
        are not the night's frequencies); dividing them out turns its probabilities into
        likelihoods, so the night's stage mix comes from ``transitions`` alone.
    n_transitions : int
        How many consecutive expert epoch pairs ``transitions`` was counted from.
    source : str
        Which data it was counted from (shown on the model card).
    temperature : float
        Applied to the answers before decoding (:func:`temper`); 1 when it was never fitted.
    """

    transitions: np.ndarray
    prior: np.ndarray
    n_transitions: int
    source: str
    temperature: float = 1.0

    def __post_init__(self) -> None:
        n = len(STAGES)
        t = _check_matrix("transitions", self.transitions, (n, n))
        p = _check_matrix("prior", self.prior, (n,))
        if not np.allclose(t.sum(1), 1.0, atol=1e-6):
            raise ValueError(f"The 'transitions' parameter must have rows that sum to 1, but "
                             f"its rows sum to {np.round(t.sum(1), 4).tolist()}.")
        if np.any(p <= 0):
            raise ValueError(f"The 'prior' parameter must be > 0 for every stage, got "
                             f"{p.tolist()}.")
        if not (isinstance(self.temperature, (int, float)) and np.isfinite(self.temperature)
                and self.temperature > 0):
            raise ValueError(f"The 'temperature' parameter must be a finite number > 0, but "
                             f"got {self.temperature!r}.")
        object.__setattr__(self, "transitions", t)
        object.__setattr__(self, "prior", p / p.sum())
        object.__setattr__(self, "temperature", float(self.temperature))

    def with_temperature(self, temperature: float) -> StageSequenceModel:
        """The same model decoding answers softened by ``temperature`` (see :func:`temper`)."""
        return replace(self, temperature=temperature)

    @classmethod
    def fit(cls, stages: Sequence[str], epochs: Sequence[int] | None = None, *,
            balanced: bool = True, pseudocount: float = 1.0, source: str = ""
            ) -> StageSequenceModel:
        """Count the transitions and the training prior from one expert-scored night.

        Parameters
        ----------
        stages, epochs
            As for :func:`transition_counts`: the epochs the model was trained on.
        balanced : bool
            Whether training drew stages ~1/sqrt(count) (``TrainSettings.balance``): the
            prior the direct answer learnt is then ~sqrt(count), not count.
        pseudocount : float
            Added to every transition, so a transition never seen in training is unlikely
            rather than impossible (one night cannot show every path through sleep).
        source : str
            Described on the card.
        """
        return cls.fit_many([(stages, epochs)], balanced=balanced, pseudocount=pseudocount,
                            source=source)

    @classmethod
    def fit_many(cls, nights: Sequence[tuple[Sequence[str], Sequence[int] | None]], *,
                 balanced: bool = True, pseudocount: float = 1.0, source: str = ""
                 ) -> StageSequenceModel:
        """As :meth:`fit`, over several nights (no transition is counted across two nights)."""
        if pseudocount <= 0:
            raise ValueError(f"The 'pseudocount' parameter must be > 0, got {pseudocount!r}.")
        counts = sum((transition_counts(st, ep) for st, ep in nights),
                     np.zeros((len(STAGES), len(STAGES))))
        freq = sum((np.bincount(_stage_index(st), minlength=len(STAGES)) for st, _ in nights),
                   np.zeros(len(STAGES))).astype(float)
        t = counts + pseudocount
        prior = np.sqrt(np.maximum(freq, 1.0)) if balanced else np.maximum(freq, 1.0)
        return cls(t / t.sum(1, keepdims=True), prior, int(counts.sum()), source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, stored under ``"sequence"`` in the model folder's manifest."""
        return {"format": SEQUENCE_FORMAT, "stages": list(STAGES),
                "transitions": np.round(self.transitions, 6).tolist(),
                "prior": np.round(self.prior, 6).tolist(),
                "n_transitions": self.n_transitions, "source": self.source,
                "temperature": round(self.temperature, 4)}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> StageSequenceModel | None:
        """The model folder manifest's ``"sequence"`` entry; None when it has none (folders
        saved before night context existed). ``ValueError`` when it is malformed."""
        raw = manifest.get("sequence")
        return None if raw is None else cls.from_dict(raw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageSequenceModel:
        """Inverse of :meth:`to_dict`; ``ValueError`` names what is wrong."""
        if not isinstance(d, dict) or d.get("format") != SEQUENCE_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"The sequence model's 'format' must be {SEQUENCE_FORMAT}, but got "
                             f"{got!r}.")
        if d.get("stages") != list(STAGES):
            raise ValueError(f"The sequence model's 'stages' must be {list(STAGES)}, but got "
                             f"{d.get('stages')!r}.")
        t = np.asarray(d.get("transitions"), dtype=float)
        t = t / t.sum(1, keepdims=True) if t.ndim == 2 and np.all(t.sum(1) > 0) else t
        # Folders saved before calibration existed have no temperature: 1 leaves them as they were.
        return cls(t, d.get("prior"), int(d.get("n_transitions", 0)), str(d.get("source", "")),
                   d.get("temperature", 1.0))

    def smooth(self, proba: np.ndarray, epochs: Sequence[int] | None = None) -> np.ndarray:
        """Each epoch's stage posterior given every staged epoch of the night.

        Parameters
        ----------
        proba : ndarray (n, 5)
            Per-epoch probabilities of the direct answer, in time order. A row of NaN is an
            epoch not staged (yet): it carries no evidence and stays NaN in the output.
        epochs : sequence of int, optional
            Epoch numbers of the rows. A gap of ``g`` epochs between two rows is bridged by
            ``transitions ** g``, so context weakens across removed epochs.

        Returns
        -------
        ndarray (n, 5)
            Row-stochastic posteriors (NaN rows kept NaN).
        """
        p = np.asarray(proba, dtype=float)
        if p.ndim != 2 or p.shape[1] != len(STAGES):
            raise ValueError(f"The 'proba' parameter must have shape (n, {len(STAGES)}), but "
                             f"got {p.shape}.")
        n = len(p)
        ep = np.arange(n) if epochs is None else np.asarray(epochs, dtype=int)
        if ep.shape != (n,) or np.any(np.diff(ep) < 1):
            raise ValueError("The 'epochs' parameter must give one strictly increasing epoch "
                             f"number per row ({n}), but got {ep.size} numbers.")
        if n == 0:
            return p.copy()
        missing = ~np.all(np.isfinite(p), axis=1)
        # Likelihoods up to a constant; an unstaged epoch is uniform (no evidence). A tiny
        # floor keeps a 0.0 probability from vetoing the neighbours' context outright.
        q = p if self.temperature == 1.0 else temper(np.where(missing[:, None], 1.0, p),
                                                          self.temperature)
        like = np.where(missing[:, None], 1.0, np.clip(q, 1e-6, None) / self.prior)
        powers = {int(g): self._power(int(g)) for g in np.unique(np.diff(ep))}
        steps = [powers[int(g)] for g in np.diff(ep)]
        alpha = np.empty_like(like)
        alpha[0] = like[0] / like[0].sum()
        for t in range(1, n):
            a = like[t] * (alpha[t - 1] @ steps[t - 1])
            alpha[t] = a / a.sum()
        post = np.empty_like(like)
        beta = np.ones(len(STAGES))
        post[-1] = alpha[-1]
        for t in range(n - 2, -1, -1):
            beta = steps[t] @ (like[t + 1] * beta)
            beta /= beta.sum()
            g = alpha[t] * beta
            post[t] = g / g.sum()
        post[missing] = np.nan
        return post

    def _power(self, gap: int) -> np.ndarray:
        # Long gaps (hours of unscored data) forget the past: T^g converges to the
        # stationary rows, so cap the exponent instead of multiplying for nothing.
        return np.linalg.matrix_power(self.transitions, min(gap, 240))
