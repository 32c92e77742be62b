"""Adapt the pooled answer to one lab's recordings from the expert's labels (numpy + scipy).

The app's answer is a log-linear pool (:mod:`.fusion`) of three stagers. RobustSleepNet's
answer is ``log_softmax(A s + b)`` of its per-epoch sequence embedding ``s`` (the mean over
the windows that cover the epoch: a mean of log-softmax rows is that, up to a per-epoch
constant the pool's softmax removes). So the pooled logits are *linear* in

    [log p_image, log p_YASA, s]  ->  a_image * log p_image + a_YASA * log p_YASA
                                      + a_RSN * (A s + b)

and adapting the model to a recording means fitting that one layer -- RobustSleepNet's
classifier and the two other pool weights -- with the three stagers' networks frozen.
What keeps it from forgetting (each measured in ``bench/learning_curve.py``):

* **L2-SP**: the loss is pulled toward the parent's parameters (not toward zero), so a few
  labels move the layer a little and many labels move it more.
* **Rehearsal**: the parent's own fusion-training epochs (shipped with the model) are mixed
  in with a fixed weight, so every stage stays represented however one-sided the
  corrections are; the class biases stay the parent's (the stage balance of the parent).
* **Re-weighting only** (:mod:`.reweight`): a second kind of candidate changes no stager's
  answers, only how much the pool trusts each of the three, for labs where one stager
  fails (a different montage for YASA, another gain for the image model).
* **A guard**: the candidate (kind and strength of the pull) is chosen by cross-validation
  over contiguous time blocks of the labelled epochs (fit on the others, score the next
  stretch of the night), and the parent is kept unless a candidate predicts the held-out
  stretches better.
* **Training variants** (optional, :attr:`AdaptSettings.variant_gains` and
  ``variant_shifts``): the labelled epochs again, computed from a re-scaled or shifted copy
  of the night, with the same labels. They only add to the *fitted* rows: a labelled epoch
  and its variants weigh as much as the epoch alone did, the guard scores originals only,
  and a variant never trains a fold that scores its source (:func:`cv_splits`).

Everything is plain numpy and a small L-BFGS problem: under a second on two cores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.head import EVIDENCE_EPOCHS, AdaptError, Head, HeadData
from eegvlm_desktop.core.staging.reweight import fit_stagers

#: The pool weights an adaptation may change (RobustSleepNet's is folded into its layer).
POOL_SOURCES = ("vlm", "yasa")
#: Candidate strengths of the pull toward the parent (``lam_layer``, ``lam_pool``), chosen
#: on SC4001's blocks (bench/learning_curve.py), where weaker pulls (1.0, 1.0) lost up to 3.6
#: points on a block's second half.
STRENGTHS: tuple[tuple[float, float], ...] = ((100.0, 10.0), (10.0, 3.0))
#: Candidate pulls of the fit that only re-weights the three stagers
#: (:func:`~eegvlm_desktop.core.staging.reweight.fit_stagers`). It replaced a third layer
#: candidate, (1e4, 0.1), that tried the same with RobustSleepNet's weight frozen; both were
#: added after looking at the DREAMS curves, so those are development results, not blind.
STAGER_STRENGTHS: tuple[float, ...] = (0.1, 0.01)
#: Fewest distinct stages among the labels for the re-weighting candidates to be tried.
MIN_STAGES_TO_REWEIGHT = 2
#: Largest time shift of a training variant (s): half of a 30-s epoch.
MAX_SHIFT_S = 15.0


@dataclass
class AdaptSettings:
    """How an adaptation is fitted (all stored in the new model's card).

    Attributes
    ----------
    strengths : tuple of (float, float)
        Candidate (layer, pool-weight) pulls toward the parent, strongest first.
    stager_strengths : tuple of float
        Candidate pulls of the fit that re-weights the three stagers only (no classifier
        changes; :mod:`.reweight`). Empty: none.
    folds : int
        Contiguous time blocks of the labelled epochs for the guard's cross-validation.
    rehearsal_weight : float
        Weight of the parent's rehearsal epochs in the loss, relative to the new ones.
    min_epochs : int
        Fewer labelled epochs than this keep the parent (nothing to cross-validate on).
    variant_gains : tuple of float
        Training variants: every channel's amplitude times each gain (e.g. 0.7, 1.4), the
        same epochs and labels. Empty: none.
    variant_shifts : tuple of float
        Training variants: the epoch grid moved by each shift in seconds (e.g. -3, 3); the
        moved epoch keeps the label of the epoch it overlaps most. Empty: none.
    """

    strengths: tuple[tuple[float, float], ...] = STRENGTHS
    stager_strengths: tuple[float, ...] = STAGER_STRENGTHS
    folds: int = 3
    rehearsal_weight: float = 1.0
    min_epochs: int = 12  # 4 per fold: with 10 labels, one noisy fold flipped SC4001 block 3
    variant_gains: tuple[float, ...] = ()
    variant_shifts: tuple[float, ...] = ()

    def validate(self) -> None:
        if not self.strengths or any(len(s) != 2 or min(s) <= 0 for s in self.strengths):
            raise AdaptError(f"Invalid value for the 'strengths' parameter: a non-empty list "
                             f"of (layer, pool) pairs > 0, but got {self.strengths!r}.")
        if any(not s > 0 for s in self.stager_strengths):
            raise AdaptError(f"Invalid value for the 'stager_strengths' parameter: pulls > 0 "
                             f"(or none), but got {self.stager_strengths!r}.")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise AdaptError(f"Invalid value for the 'folds' parameter: a whole number >= 2, "
                             f"but got {self.folds!r}.")
        if not self.rehearsal_weight >= 0:
            raise AdaptError(f"Invalid value for the 'rehearsal_weight' parameter: a number "
                             f">= 0, but got {self.rehearsal_weight!r}.")
        if not isinstance(self.min_epochs, int) or self.min_epochs < 2 * self.folds:
            raise AdaptError(f"Invalid value for the 'min_epochs' parameter: a whole number "
                             f">= 2 x folds ({2 * self.folds}), but got {self.min_epochs!r}.")
        if any(not (g > 0 and g != 1) for g in self.variant_gains):
            raise AdaptError(f"Invalid value for the 'variant_gains' parameter: gains > 0 and "
                             f"not 1, but got {self.variant_gains!r}.")
        # Beyond half an epoch the moved epoch would be mostly its neighbour, whose label
        # it does not carry.
        if any(not (0 < abs(t) < MAX_SHIFT_S) for t in self.variant_shifts):
            raise AdaptError(f"Invalid value for the 'variant_shifts' parameter: seconds, "
                             f"0 < |shift| < {MAX_SHIFT_S:g}, but got {self.variant_shifts!r}.")

    @property
    def has_variants(self) -> bool:
        return bool(self.variant_gains or self.variant_shifts)

    def to_dict(self) -> dict[str, Any]:
        return {"strengths": [list(s) for s in self.strengths],
                "stager_strengths": list(self.stager_strengths), "folds": self.folds,
                "rehearsal_weight": self.rehearsal_weight, "min_epochs": self.min_epochs,
                "variant_gains": list(self.variant_gains),
                "variant_shifts": list(self.variant_shifts)}


@dataclass
class AdaptReport:
    """What the guard chose and why (cross-validated log-loss per candidate)."""

    chosen: str  # "parent", "layer=..,pool=.." or "stagers=.."
    n_epochs: int
    stage_counts: dict[str, int]
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    n_rehearsal: int = 0
    n_variants: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "n_epochs": self.n_epochs,
                "stage_counts": self.stage_counts, "n_rehearsal": self.n_rehearsal,
                "n_variants": self.n_variants,
                "cv_log_loss": {k: round(v, 4) for k, v in self.cv_log_loss.items()}}


def _loss(parent: Head, new: HeadData, rehearsal: HeadData | None, weight: float,
          lam: tuple[float, float], sample_weight: np.ndarray | None = None
          ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    theta0 = parent.to_vector()
    n_pool = len(POOL_SOURCES)
    n_layer = parent.layer.size
    pull = np.concatenate([np.full(n_pool, lam[1]), np.full(n_layer, lam[0]),
                           np.full(len(STAGES), 1e6)])  # biases stay the parent's
    # Evidence grows with the labels: each labelled epoch weighs 1 / EVIDENCE_EPOCHS, while
    # the rehearsal set weighs ``weight`` in all. A night's 30 corrections move the layer
    # less than a lab's 3,000 epochs do, against the same pull toward the parent.
    sets = [(new, (np.ones(len(new)) if sample_weight is None else sample_weight)
             / EVIDENCE_EPOCHS)]
    if rehearsal is not None and len(rehearsal) and weight > 0:
        sets.append((rehearsal, np.full(len(rehearsal), weight / len(rehearsal))))

    def f(v: np.ndarray) -> tuple[float, np.ndarray]:
        head = parent.with_vector(v)
        total, grad = 0.0, np.zeros_like(v)
        for x, w in sets:
            lp = head.log_proba(x)
            rows = np.arange(len(x))
            total -= float(w @ lp[rows, x.y])
            g = np.exp(lp)
            g[rows, x.y] -= 1.0
            g *= w[:, None]
            grad[0] += (g * x.vlm).sum()
            grad[1] += (g * x.yasa).sum()
            grad[2:2 + n_layer] += (g.T @ x.seq).ravel()
            grad[2 + n_layer:] += g.sum(axis=0)
        d = v - theta0
        return total + 0.5 * float((pull * d * d).sum()), grad + pull * d
    return f


def fit_layer(parent: Head, new: HeadData, rehearsal: HeadData | None,
              lam: tuple[float, float], rehearsal_weight: float = 1.0,
              sample_weight: np.ndarray | None = None) -> Head:
    """One L2-SP fit of the layer on ``new`` (+ rehearsal); pool weights stay >= 0.

    ``sample_weight`` (n,) weighs the rows of ``new`` (1 each when None): an epoch and its
    training variants share one epoch's weight.
    """
    from scipy.optimize import minimize  # deferred: scipy.optimize is slow to import

    if new.y is None or rehearsal is not None and rehearsal.y is None:
        raise AdaptError("The 'new' and 'rehearsal' parameters need expert stages (y).")
    v0 = parent.to_vector()
    bounds = [(0.0, None)] * len(POOL_SOURCES) + [(None, None)] * (len(v0) - len(POOL_SOURCES))
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=float)
        if sample_weight.shape != (len(new),) or not (sample_weight >= 0).all():
            raise AdaptError(f"The 'sample_weight' parameter must hold {len(new)} weights "
                             f">= 0, but got shape {sample_weight.shape}.")
    res = minimize(_loss(parent, new, rehearsal, rehearsal_weight, lam, sample_weight), v0,
                   jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 300})
    return parent.with_vector(res.x)


def _nll(head: Head, x: HeadData) -> float:
    return float(-head.log_proba(x)[np.arange(len(x)), x.y].mean())


def cv_splits(n: int, folds: int, variant_source: np.ndarray | None = None
              ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The guard's folds: contiguous time blocks of ``n`` labelled epochs.

    Parameters
    ----------
    n : int
        Labelled (original) epochs, in time order.
    folds : int
        Number of blocks (>= 2).
    variant_source : ndarray of int, optional
        For each training variant, the position (0..n-1) of the epoch it was made from.

    Returns
    -------
    list of (train, train_variants, scored)
        Positions of the originals fitted on, of the variants fitted on, and of the
        originals scored. A variant trains a fold only when its source is not scored there
        (a shifted or re-scaled copy of a scored epoch would let the fold see its answer),
        and variants are never scored: the guard measures the recording as recorded.
    """
    if not isinstance(folds, int) or folds < 2 or n < folds:
        raise AdaptError(f"The 'folds' parameter must be a whole number in 2..n ({n}), but "
                         f"got {folds!r}.")
    src = np.zeros(0, dtype=int) if variant_source is None else np.asarray(variant_source,
                                                                          dtype=int)
    if len(src) and (src.min() < 0 or src.max() >= n):
        raise AdaptError(f"The 'variant_source' parameter must hold positions in 0..{n - 1}, "
                         f"but got values in {src.min()}..{src.max()}.")
    out = []
    for f in np.array_split(np.arange(n), folds):
        out.append((np.setdiff1d(np.arange(n), f), np.flatnonzero(~np.isin(src, f)), f))
    return out


def _with_variants(new: HeadData, rows: np.ndarray, variants: HeadData | None,
                   src: np.ndarray, vrows: np.ndarray) -> tuple[HeadData, np.ndarray | None]:
    """The fitted rows (originals ``rows`` + variants ``vrows``) and their weights: an epoch
    and its fitted variants share one epoch's weight, so variants shape the fit without
    adding evidence against the pull toward the parent."""
    if variants is None or not len(vrows):
        return new.subset(rows), None
    per = 1.0 + np.bincount(src[vrows], minlength=len(new)).astype(float)
    x = HeadData(np.concatenate([new.vlm[rows], variants.vlm[vrows]]),
                 np.concatenate([new.yasa[rows], variants.yasa[vrows]]),
                 np.concatenate([new.seq[rows], variants.seq[vrows]]),
                 np.concatenate([new.y[rows], variants.y[vrows]]))
    return x, 1.0 / np.concatenate([per[rows], per[src[vrows]]])


def adapt_layer(parent: Head, new: HeadData, rehearsal: HeadData | None = None,
                settings: AdaptSettings | None = None,
                should_stop: Callable[[], bool] = lambda: False,
                variants: HeadData | None = None,
                variant_source: np.ndarray | None = None) -> tuple[Head, AdaptReport]:
    """Adapt the pooled layer to labelled epochs, or keep the parent when that is safer.

    Parameters
    ----------
    parent : Head
        The parent model's layer (:meth:`Head.from_parent`).
    new : HeadData
        The labelled epochs of the recording(s), **in time order** (the guard's folds are
        contiguous stretches of them), with ``y``.
    rehearsal : HeadData, optional
        The parent's fusion-training epochs, with ``y``.
    settings : AdaptSettings, optional
    should_stop : callable
        Polled between fits; True raises :class:`InterruptedError`.
    variants : HeadData, optional
        Training variants of labelled epochs, with ``y`` (fitted on, never scored).
    variant_source : ndarray of int, optional
        For each row of ``variants``, the position in ``new`` of the epoch it was made from
        (required with ``variants``).

    Returns
    -------
    (Head, AdaptReport)
        The parent itself when fewer than ``settings.min_epochs`` epochs are labelled or no
        candidate beats it in cross-validation.
    """
    settings = settings or AdaptSettings()
    settings.validate()
    if new.y is None:
        raise AdaptError("The 'new' parameter needs the expert's stages (y).")
    src = np.zeros(0, dtype=int)
    if variants is not None:
        if variants.y is None or variant_source is None or \
                np.shape(variant_source) != (len(variants),):
            raise AdaptError(f"The 'variants' parameter needs stages (y) and a "
                             f"'variant_source' of {len(variants)} positions in 'new', but got "
                             f"{None if variant_source is None else np.shape(variant_source)}.")
        src = np.asarray(variant_source, dtype=int)
    counts = {s: int((new.y == i).sum()) for i, s in enumerate(STAGES)}
    report = AdaptReport("parent", len(new), counts,
                         n_rehearsal=0 if rehearsal is None else len(rehearsal),
                         n_variants=len(src))
    if len(new) < settings.min_epochs:
        return parent, report
    splits = cv_splits(len(new), settings.folds, src)
    report.cv_log_loss["parent"] = float(np.mean([_nll(parent, new.subset(f))
                                                  for _, _, f in splits]))
    def fit(cand: tuple[str, Any], x: HeadData, w: np.ndarray | None) -> Head:
        if cand[0] == "layer":
            return fit_layer(parent, x, rehearsal, cand[1], settings.rehearsal_weight, w)
        return fit_stagers(parent, x, rehearsal, cand[1], settings.rehearsal_weight, w)

    # Labels of one stage only cannot say which stager to trust: they favour whichever
    # calls that stage most (60 wake-only labels of an SC4001 block cost it 2.4 points).
    reweigh = len(np.unique(new.y)) >= MIN_STAGES_TO_REWEIGHT
    candidates = ([(f"layer={lam[0]:g},pool={lam[1]:g}", ("layer", lam))
                   for lam in settings.strengths]
                  + [(f"stagers={lam:g}", ("stagers", lam))
                     for lam in (settings.stager_strengths if reweigh else ())])
    best, best_cand = report.cv_log_loss["parent"], None
    for key, cand in candidates:
        scores = []
        for train, vtrain, f in splits:
            if should_stop():
                raise InterruptedError("adaptation cancelled")
            x, w = _with_variants(new, train, variants, src, vtrain)
            scores.append(_nll(fit(cand, x, w), new.subset(f)))
        report.cv_log_loss[key] = float(np.mean(scores))
        if report.cv_log_loss[key] < best:
            best, best_cand, report.chosen = report.cv_log_loss[key], cand, key
    if best_cand is None:
        return parent, report
    if should_stop():
        raise InterruptedError("adaptation cancelled")
    x, w = _with_variants(new, np.arange(len(new)), variants, src, np.arange(len(src)))
    return fit(best_cand, x, w), report
