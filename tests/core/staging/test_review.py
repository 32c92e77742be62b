"""The review rules, without a window: what accepting takes, what needs a look."""
from __future__ import annotations

import numpy as np

from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.core.staging.review import UNSURE_BELOW, acceptance, needs_a_look


def layer_with(rows: dict[int, list[float]], n: int = 5) -> ModelLayer:
    layer = ModelLayer(n, "m")
    layer.set_proba(list(rows), np.array(list(rows.values()), float))
    return layer


def test_acceptance_takes_only_staged_epochs_and_names_the_model():
    layer = layer_with({1: [0.9, 0.1, 0, 0, 0], 3: [0, 0, 0.7, 0.3, 0]})
    chosen, stages, detail = acceptance(layer, [0, 1, 3])
    assert chosen == [1, 3] and stages == ["W", "N2"]
    assert detail["model"] == "m" and detail["model_confidence"] == [0.9, 0.7]


def test_needs_a_look_marks_unsure_or_disagreeing_staged_epochs():
    sure, unsure = [0.95, 0.05, 0, 0, 0], [UNSURE_BELOW - 0.1, 0.45, 0.05, 0, 0]
    layer = layer_with({0: sure, 1: unsure, 2: sure})
    mask = needs_a_look(layer, ["W", "W", "N2", "W", "W"])
    assert mask.tolist() == [False, True, True, False, False]  # 3, 4: not staged
