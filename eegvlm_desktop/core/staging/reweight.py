"""Re-weight the three stagers for a lab: the adaptation that changes no stager's answers.

:func:`~eegvlm_desktop.core.staging.adapt.fit_layer` re-fits RobustSleepNet's classifier and
the pool weights of the image model and YASA; RobustSleepNet's own pool weight is folded
into its classifier there, so a strong pull on the classifier also froze how much the pool
trusts RobustSleepNet. On another lab's recordings the stagers fail *differently*: on
DREAMS excerpt 3 YASA called most N1 epochs wake and the image model and RobustSleepNet
were each right on 80 % of the second half where the pool was right on 70 %; on excerpt 4
RobustSleepNet alone was right on 97 % of the first half. What those labs need is a
different trust in each stager, not a different classifier.

:func:`fit_stagers` fits exactly that: three non-negative weights, one per stager, with
RobustSleepNet's classifier scaled as a whole (its stage knowledge, biases included, is
kept). Three numbers from 30 labels cannot overfit the way a 505-parameter layer can, and
no stage can be forgotten: every stager still gives every stage its own answer.

* **Balanced stages**: each labelled stage weighs the same in the fit (an N1 epoch as much
  as an N2 one), so the trust is judged on every stage the expert scored, not on the
  majority stage only. The labelled epochs together keep their evidence weight.
* **L2-SP and rehearsal**: the weights are pulled toward the parent's, and the parent's
  fusion-training epochs are mixed in, as in the layer fit; the guard in
  :func:`~eegvlm_desktop.core.staging.adapt.adapt_layer` chooses the pull by time-blocked
  cross-validation or keeps the parent.
"""
from __future__ import annotations

import numpy as np

from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.head import (EVIDENCE_EPOCHS, AdaptError, Head, HeadData,
                                              log_softmax)


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-epoch weights that give each stage present in ``y`` the same total, summing to
    ``len(y)`` (so the labels' evidence against the pull toward the parent is unchanged)."""
    y = np.asarray(y, dtype=int)
    counts = np.bincount(y, minlength=len(STAGES)).astype(float)
    present = int((counts > 0).sum())
    if present == 0:
        return np.zeros(0)
    return len(y) / (present * counts[y])


def _inputs(parent: Head, x: HeadData) -> np.ndarray:
    """(3, n, 5): the image model's and YASA's log-probabilities and RobustSleepNet's
    logits as the parent pools them (classifier times its pool weight)."""
    return np.stack([x.vlm, x.yasa, x.seq @ parent.layer.T + parent.bias])


def fit_stagers(parent: Head, new: HeadData, rehearsal: HeadData | None, lam: float,
                rehearsal_weight: float = 1.0,
                sample_weight: np.ndarray | None = None) -> Head:
    """Fit the three stagers' pool weights on ``new`` (+ rehearsal), all >= 0.

    Parameters
    ----------
    parent : Head
        The parent's pooled layer; its RobustSleepNet classifier is kept up to one scale.
    new : HeadData
        Labelled epochs (with ``y``); stages are balanced (:func:`balanced_weights`).
    rehearsal : HeadData, optional
        The parent's fusion-training epochs, weighing ``rehearsal_weight`` in all.
    lam : float
        Pull toward the parent's weights (L2-SP), > 0.
    sample_weight : ndarray (n,), optional
        Extra weight per row of ``new`` (an epoch and its training variants share one).

    Returns
    -------
    Head
        ``a_vlm``, ``a_yasa`` re-fitted; ``layer`` and ``bias`` the parent's times the
        re-fitted RobustSleepNet scale.
    """
    from scipy.optimize import minimize  # deferred: scipy.optimize is slow to import

    if new.y is None or rehearsal is not None and rehearsal.y is None:
        raise AdaptError("The 'new' and 'rehearsal' parameters need expert stages (y).")
    if not lam > 0:
        raise AdaptError(f"The 'lam' parameter must be a pull > 0, but got {lam!r}.")
    w_new = balanced_weights(new.y)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=float)
        if sample_weight.shape != (len(new),) or not (sample_weight >= 0).all():
            raise AdaptError(f"The 'sample_weight' parameter must hold {len(new)} weights "
                             f">= 0, but got shape {sample_weight.shape}.")
        # Variants share their epoch's weight; the rows still add up to the epochs' evidence.
        w_new = w_new * sample_weight
        w_new *= sample_weight.sum() / max(float(w_new.sum()), 1e-12)
    sets = [(_inputs(parent, new), new.y, w_new / EVIDENCE_EPOCHS)]
    if rehearsal is not None and len(rehearsal) and rehearsal_weight > 0:
        sets.append((_inputs(parent, rehearsal), rehearsal.y,
                     np.full(len(rehearsal), rehearsal_weight / len(rehearsal))))
    w0 = np.array([parent.a_vlm, parent.a_yasa, 1.0])

    def loss(v: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros(3)
        for c, y, w in sets:
            lp = log_softmax(np.tensordot(v, c, axes=1))
            rows = np.arange(len(y))
            total -= float(w @ lp[rows, y])
            g = np.exp(lp)
            g[rows, y] -= 1.0
            g *= w[:, None]
            grad += np.einsum("nk,snk->s", g, c)
        d = v - w0
        return total + 0.5 * lam * float(d @ d), grad + lam * d

    res = minimize(loss, w0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * 3,
                   options={"maxiter": 200})
    a_vlm, a_yasa, scale = (float(v) for v in res.x)
    return Head(a_vlm, a_yasa, scale * parent.layer, scale * parent.bias)
