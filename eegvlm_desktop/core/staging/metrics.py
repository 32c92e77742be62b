"""Agreement between an expert hypnogram and a predicted one, as JSON-ready numbers.

One function, :func:`stage_metrics`, used by every comparison in the project (YASA baseline,
in-night cross-validation, the VLM), so all of them count the same epochs the same way:

* epochs the expert did not score (``UNS``) or marked as artefact (``ART``) carry no truth and
  are left out (their number is reported as ``excluded``);
* the five AASM stages are always the label set, in :data:`~.stages.STAGES` order, so a stage
  absent from one night still has its row and column in the confusion matrix.

scikit-learn computes the numbers (imported inside the function: it is slow to import).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.stages import ALL_LABELS, ART, STAGES, UNS

#: Expert labels that carry no stage and are excluded from scoring.
EXCLUDED_LABELS: tuple[str, ...] = (UNS, ART)


def _check_labels(name: str, values: np.ndarray, allowed: Sequence[str]) -> None:
    bad = sorted({str(v) for v in values if v not in allowed})
    if bad:
        raise ValueError(
            f"Invalid value for the '{name}' parameter. Allowed values are "
            f"{', '.join(allowed)}, but got {', '.join(map(repr, bad[:5]))}.")


def _finite_or_none(x: float) -> float | None:
    """A plain float, or ``None`` where the metric is undefined (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


def stage_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, Cohen's kappa, per-stage F1 and the confusion matrix.

    Parameters
    ----------
    y_true : sequence of str
        Expert labels, one per epoch, from :data:`~.stages.ALL_LABELS`. Epochs labelled
        ``UNS`` or ``ART`` are excluded from every number below.
    y_pred : sequence of str
        Predicted labels for the same epochs. On the scored epochs they must be one of the
        five stages :data:`~.stages.STAGES` (a prediction of "unscored" is not a stage and
        would silently vanish from the confusion matrix, so it is refused).

    Returns
    -------
    dict
        JSON-ready (plain ``int``/``float``/``None``/lists):

        ``n_epochs``
            Epochs scored (after exclusion).
        ``excluded``
            Epochs left out because the expert label is ``UNS`` or ``ART``.
        ``accuracy``, ``macro_f1``, ``kappa``
            Overall agreement. ``macro_f1`` averages the F1 of the stages that occur in
            ``y_true`` or ``y_pred`` (a stage absent from both has no F1). ``kappa`` is
            ``None`` when undefined (both sides one single identical stage).
        ``per_stage_f1``
            ``{stage: F1 or None}`` for W, N1, N2, N3, R.
        ``support``
            ``{stage: number of expert epochs}``.
        ``confusion``
            5 x 5 nested lists; rows are the expert's stage, columns the predicted stage,
            both in the order of ``labels``.
        ``labels``
            ``["W", "N1", "N2", "N3", "R"]``.

    Raises
    ------
    ValueError
        Lengths differ, a label is unknown, or no epoch is left after exclusion.
    """
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

    t = np.asarray([str(v) for v in y_true], dtype=object)
    p = np.asarray([str(v) for v in y_pred], dtype=object)
    if len(t) != len(p):
        raise ValueError(f"'y_true' and 'y_pred' must have the same length, but got "
                         f"{len(t)} and {len(p)} labels.")
    _check_labels("y_true", t, ALL_LABELS)
    keep = ~np.isin(t, EXCLUDED_LABELS)
    t, p = t[keep], p[keep]
    _check_labels("y_pred", p, STAGES)
    if len(t) == 0:
        raise ValueError("Invalid value for the 'y_true' parameter: it must hold at least one "
                         f"scored epoch ({', '.join(STAGES)}), but every label is "
                         f"{' or '.join(EXCLUDED_LABELS)} (or it is empty).")
    labels = list(STAGES)
    cm = confusion_matrix(t, p, labels=labels)
    # zero_division=nan: a stage absent from both sides has no F1, and sklearn then leaves it
    # out of the macro average instead of counting it as 0 (which would punish a night for
    # simply having no N3, say).
    per_f1 = f1_score(t, p, labels=labels, average=None, zero_division=np.nan)
    macro = f1_score(t, p, labels=labels, average="macro", zero_division=np.nan)
    # Kappa is 0/0 when chance agreement is 1, i.e. both raters used one and the same stage
    # for every epoch; report None rather than let sklearn warn and return NaN.
    n = cm.sum()
    p_chance = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / float(n * n)
    kappa = (None if p_chance >= 1.0 - 1e-12
             else float(cohen_kappa_score(t, p, labels=labels)))
    return {
        "n_epochs": int(n),
        "excluded": int((~keep).sum()),
        "accuracy": float(accuracy_score(t, p)),
        "macro_f1": _finite_or_none(macro),
        "kappa": kappa,
        "per_stage_f1": {s: _finite_or_none(f) for s, f in zip(labels, per_f1)},
        "support": {s: int(c) for s, c in zip(labels, cm.sum(axis=1))},
        "confusion": [[int(c) for c in row] for row in cm],
        "labels": labels,
    }
