"""The log-linear pool of the image model with the cohort stagers."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.staging.fusion import Fusion, fit_weights, to_log
from eegvlm_desktop.core.stages import STAGES


def _onehot(idx: list[int], p: float = 0.9) -> np.ndarray:
    out = np.full((len(idx), 5), (1 - p) / 4)
    out[np.arange(len(idx)), idx] = p
    return out


def test_pool_is_weighted_product_of_experts() -> None:
    a, b = _onehot([0, 2]), _onehot([1, 2], 0.6)
    pooled = Fusion({"vlm": 1.0, "rsn": 1.0}).pool({"vlm": to_log(a), "rsn": to_log(b)})
    expect = a * b / (a * b).sum(1, keepdims=True)
    np.testing.assert_allclose(pooled, expect, rtol=1e-9)
    # a zero weight silences a source; an absent weighted source is simply left out
    only = Fusion({"vlm": 0.0, "rsn": 2.0}).pool({"vlm": to_log(a), "rsn": to_log(b)})
    np.testing.assert_allclose(only.argmax(1), [1, 2])
    alone = Fusion({"vlm": 1.0, "yasa": 1.0}).pool({"vlm": to_log(a)})
    np.testing.assert_allclose(alone, a / a.sum(1, keepdims=True))


def test_confident_outlier_is_outvoted_by_two_sources() -> None:
    # The image model says W at 0.95; two cohort stagers say N3 at 0.8: N3 wins.
    vlm, rsn, yasa = _onehot([0], 0.95), _onehot([3], 0.8), _onehot([3], 0.8)
    pooled = Fusion({"vlm": 0.12, "rsn": 0.4, "yasa": 0.69}).pool(
        {"vlm": to_log(vlm), "rsn": to_log(rsn), "yasa": to_log(yasa)})
    assert STAGES[int(pooled.argmax())] == "N3"


def test_fit_recovers_which_source_to_trust() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    good = _onehot(list(y), 0.8)
    noise = _onehot(list(rng.integers(0, 5, 400)), 0.8)
    w = fit_weights([{"vlm": to_log(noise), "rsn": to_log(good)}],
                    [[STAGES[i] for i in y]], ("vlm", "rsn"))
    assert w["rsn"] > 0.8 and w["vlm"] < 0.1


def test_round_trip_and_errors() -> None:
    f = Fusion({"vlm": 0.1, "rsn": 0.4}, "somewhere", {"night_context": False})
    g = Fusion.from_dict(f.to_dict())
    assert g.weights == f.weights and g.fitted_on == "somewhere"
    assert g.extra["night_context"] is False
    with pytest.raises(ValueError, match="'vlm', 'rsn', 'yasa'"):
        Fusion({"gssc": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        Fusion({"vlm": -1.0})
    with pytest.raises(ValueError, match="none of the weighted sources"):
        Fusion({"vlm": 1.0}).pool({"rsn": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="shape"):
        Fusion({"vlm": 1.0, "rsn": 1.0}).pool({"vlm": np.zeros((2, 5)), "rsn": np.zeros((3, 5))})
