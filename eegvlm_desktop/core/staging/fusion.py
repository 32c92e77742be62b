"""Pooling the image model's answer with cohort-trained evidence (numpy only, no torch).

The EEG-VLM sees one epoch image and was trained on one night of one lab; on other labs'
recordings its direct answer can be confidently wrong (DREAMS excerpt 2: 0.23 accuracy).
Two stagers trained on thousands of nights from other cohorts see the same recording:
RobustSleepNet (943 nights of MESA, MrOS, SHHS, MASS, DOD) and YASA's LightGBM classifier
(~3,000 NSRR nights). The answer the app shows is their *log-linear pool*::

    log p(stage) = sum_s  w_s * log p_s(stage)  + const

one weight per source, fitted by maximum likelihood on answers that the sources gave for
epochs they never trained on (for the shipped model: the image model's out-of-fold answers
of its cross-validation on SC4001, beside RobustSleepNet's and YASA's zero-shot answers on
the same epochs). A source that is missing for a recording (YASA needs 5 minutes) is left out
of the sum; the others keep their weights.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eegvlm_desktop.core.stages import STAGES

#: Sources an answer can be pooled from, in display order.
SOURCES: tuple[str, ...] = ("vlm", "rsn", "yasa")
#: What the epoch panel and the card call them.
SOURCE_NAMES: dict[str, str] = {
    "vlm": "EEG-VLM (epoch image)",
    "rsn": "RobustSleepNet (cohort encoder)",
    "yasa": "YASA (cohort classifier)",
}
_FLOOR = 1e-6  # probabilities below this are treated as this (log of 0 is -inf)


def _check_log_proba(name: str, value: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(STAGES) or (n is not None and arr.shape[0] != n):
        want = f"({n if n is not None else 'n'}, {len(STAGES)})"
        raise ValueError(f"The '{name}' parameter must be an array of shape {want} "
                         f"(log-probabilities in {', '.join(STAGES)} order), but got shape "
                         f"{arr.shape}.")
    return arr


def to_log(proba: np.ndarray) -> np.ndarray:
    """Log of probabilities, floored so that a zero does not veto a stage outright."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), _FLOOR, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Fusion:
    """Weights of the log-linear pool and where they were fitted.

    Attributes
    ----------
    weights : dict
        ``{source: weight}`` for sources in :data:`SOURCES`; a weight is >= 0.
    fitted_on : str
        The epochs the weights were fitted on, in words (shown on the model card).
    """

    weights: dict[str, float]
    fitted_on: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Mapping) or not self.weights:
            raise ValueError(f"The 'weights' parameter must be a non-empty mapping of "
                             f"{', '.join(SOURCES)} to weights, but got {self.weights!r}.")
        for k, w in self.weights.items():
            if k not in SOURCES:
                raise ValueError(f"Invalid source in the 'weights' parameter. Allowed values "
                                 f"are {', '.join(map(repr, SOURCES))}, but got {k!r}.")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) \
                    or w < 0:
                raise ValueError(f"The weight of {k!r} must be a finite number >= 0, but got "
                                 f"{w!r}.")

    def pool(self, log_proba: Mapping[str, np.ndarray]) -> np.ndarray:
        """Pooled probabilities ``(n, 5)`` from each available source's log-probabilities.

        Parameters
        ----------
        log_proba : mapping
            ``{source: (n, 5) log-probabilities}``; sources without a weight are ignored,
            weighted sources that are absent are left out of the sum.

        Raises
        ------
        ValueError
            No weighted source is given, or the arrays do not share one shape.
        """
        used = [s for s in SOURCES if s in log_proba and self.weights.get(s, 0.0) > 0]
        if not used:
            raise ValueError(f"The 'log_proba' parameter holds none of the weighted sources "
                             f"({', '.join(sorted(self.weights))}); it has "
                             f"{sorted(log_proba)}.")
        n = np.asarray(log_proba[used[0]]).shape[0]
        z = sum(self.weights[s] * _check_log_proba(f"log_proba[{s!r}]", log_proba[s], n)
                for s in used)
        return _softmax(z)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": {k: round(float(v), 6) for k, v in self.weights.items()},
                "fitted_on": self.fitted_on, **self.extra}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fusion:
        if not isinstance(d, Mapping) or "weights" not in d:
            raise ValueError(f"A fusion block needs a 'weights' table, but got {d!r}.")
        extra = {k: v for k, v in d.items() if k not in ("weights", "fitted_on")}
        return cls({k: float(v) for k, v in dict(d["weights"]).items()},
                   str(d.get("fitted_on", "")), extra)


def fit_weights(log_proba: Sequence[Mapping[str, np.ndarray]], stages: Sequence[Sequence[str]],
                sources: Sequence[str] = SOURCES) -> dict[str, float]:
    """Maximum-likelihood weights of the log-linear pool.

    Parameters
    ----------
    log_proba : sequence of mappings
        One ``{source: (n_i, 5) log-probabilities}`` per recording; every source in
        ``sources`` must be present. Use answers given on epochs the sources never
        trained on, or the weights reward memorisation.
    stages : sequence of sequences of str
        The expert stage of each epoch, one sequence per recording (W, N1, N2, N3, R;
        anything else is left out).
    sources : sequence of str
        Which sources to weight.

    Returns
    -------
    dict
        ``{source: weight >= 0}``. Each recording counts equally (mean of per-recording
        mean negative log-likelihoods), so a whole night does not drown a short excerpt.
    """
    from scipy.optimize import minimize

    if len(log_proba) != len(stages) or not log_proba:
        raise ValueError(f"The 'log_proba' and 'stages' parameters must hold one entry per "
                         f"recording (at least one), but got {len(log_proba)} and "
                         f"{len(stages)}.")
    for s in sources:
        if s not in SOURCES:
            raise ValueError(f"Invalid value in the 'sources' parameter. Allowed values are "
                             f"{', '.join(map(repr, SOURCES))}, but got {s!r}.")
    data = []
    for i, (lp, st) in enumerate(zip(log_proba, stages)):
        keep = np.array([s in STAGES for s in st])
        y = np.array([STAGES.index(s) for s in np.asarray(st)[keep]], dtype=int)
        xs = [_check_log_proba(f"log_proba[{i}][{s!r}]", lp[s], len(st))[keep] for s in sources]
        data.append((np.stack(xs), y))

    def nll(w_raw: np.ndarray) -> float:
        w = np.exp(w_raw)  # positivity without bounds
        total = 0.0
        for xs, y in data:
            z = np.tensordot(w, xs, axes=1)
            z = z - z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z).sum(axis=1))
            total += float(np.mean(lse - z[np.arange(len(y)), y]))
        return total / len(data)

    res = minimize(nll, np.zeros(len(sources)), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 4000})
    return {s: float(np.exp(v)) for s, v in zip(sources, res.x)}
