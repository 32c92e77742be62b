"""The pooled layer an adaptation fits, and its inputs (numpy only).

Shared by the two kinds of fit: :func:`~eegvlm_desktop.core.staging.adapt.fit_layer`
(RobustSleepNet's classifier and the pool weights) and
:func:`~eegvlm_desktop.core.staging.reweight.fit_stagers` (the three stagers' weights only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from eegvlm_desktop.core.stages import STAGES

#: Labelled epochs that weigh as much as the whole rehearsal set (at rehearsal weight 1).
EVIDENCE_EPOCHS = 100


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits ``z`` (n, k), stable for large values."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class AdaptError(ValueError):
    """The labels or features cannot be used to adapt the model."""


@dataclass
class HeadData:
    """Per-epoch inputs of the pooled layer, and the expert's stages when known.

    Attributes
    ----------
    vlm, yasa : ndarray (n, 5)
        Log-probabilities of the image model and of YASA, in :data:`STAGES` order.
    seq : ndarray (n, d)
        RobustSleepNet's sequence embedding of each epoch.
    y : ndarray (n,) of int, optional
        Expert stage indices into :data:`STAGES`.
    """

    vlm: np.ndarray
    yasa: np.ndarray
    seq: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.seq)
        for name in ("vlm", "yasa"):
            a = np.asarray(getattr(self, name), dtype=float)
            if a.shape != (n, len(STAGES)) or not np.isfinite(a).all():
                raise AdaptError(f"The '{name}' parameter must be finite log-probabilities of "
                                 f"shape ({n}, {len(STAGES)}), but got shape {a.shape}.")
            setattr(self, name, a)
        self.seq = np.asarray(self.seq, dtype=float)
        if self.seq.ndim != 2 or not np.isfinite(self.seq).all():
            raise AdaptError(f"The 'seq' parameter must be a finite 2-D array, but got shape "
                             f"{self.seq.shape}.")
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=int)
            if self.y.shape != (n,) or (n and (self.y.min() < 0 or self.y.max() >= len(STAGES))):
                raise AdaptError(f"The 'y' parameter must hold {n} stage indices in 0..4, "
                                 f"but got shape {self.y.shape}.")

    def __len__(self) -> int:
        return len(self.seq)

    def subset(self, idx: Sequence[int] | np.ndarray) -> HeadData:
        idx = np.asarray(idx, dtype=int)
        return HeadData(self.vlm[idx], self.yasa[idx], self.seq[idx],
                        None if self.y is None else self.y[idx])


@dataclass
class Head:
    """The pooled layer: pool weights of the image model and YASA, and RobustSleepNet's
    classifier scaled by its pool weight (``layer`` (5, d), ``bias`` (5,))."""

    a_vlm: float
    a_yasa: float
    layer: np.ndarray
    bias: np.ndarray

    @classmethod
    def from_parent(cls, weights: Mapping[str, float], rsn_weight: np.ndarray,
                    rsn_bias: np.ndarray) -> Head:
        """The parent's layer from its fusion weights and RobustSleepNet's classifier."""
        w = float(weights.get("rsn", 0.0))
        return cls(float(weights.get("vlm", 0.0)), float(weights.get("yasa", 0.0)),
                   w * np.asarray(rsn_weight, float), w * np.asarray(rsn_bias, float))

    def logits(self, x: HeadData) -> np.ndarray:
        return self.a_vlm * x.vlm + self.a_yasa * x.yasa + x.seq @ self.layer.T + self.bias

    def log_proba(self, x: HeadData) -> np.ndarray:
        return log_softmax(self.logits(x))

    def to_vector(self) -> np.ndarray:
        return np.concatenate([[self.a_vlm, self.a_yasa], self.layer.ravel(), self.bias])

    def with_vector(self, v: np.ndarray) -> Head:
        d = self.layer.shape[1]
        n = len(STAGES)
        return Head(float(v[0]), float(v[1]), v[2:2 + n * d].reshape(n, d).copy(),
                    v[2 + n * d:].copy())

    def rsn_classifier(self, rsn_pool_weight: float) -> tuple[np.ndarray, np.ndarray]:
        """RobustSleepNet's classifier (weight, bias) that, with pool weight
        ``rsn_pool_weight``, gives this layer -- what an adapted model folder stores."""
        if not rsn_pool_weight > 0:
            raise AdaptError(f"The 'rsn_pool_weight' parameter must be > 0, but got "
                             f"{rsn_pool_weight!r}.")
        return self.layer / rsn_pool_weight, self.bias / rsn_pool_weight
