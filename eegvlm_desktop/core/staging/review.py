"""The scorer's review of the model's output, Qt-free: what to accept, what needs a look.

The keys are wired in ``gui/controllers/review.py``; the rules live here so they are tested
without a window: accepting the model's stage (``M``, ``Shift+M``) becomes an expert label with
the model's name and confidence in the audit line, and ``N`` walks the epochs where the model
is unsure or disagrees with the expert.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eegvlm_desktop.core.staging.model_layer import ModelLayer

#: Below this top probability an epoch counts as one the model is unsure about ("N" key).
UNSURE_BELOW = 0.6


def acceptance(layer: ModelLayer, epochs: Sequence[int]) -> tuple[list[int], list[str], dict]:
    """The epochs the model has staged among ``epochs``, their stages, and the audit detail.

    Returns
    -------
    chosen, stages, detail
        ``detail`` (model name, its confidence per chosen epoch, whether night context was
        on) goes into the audit line of the ``accepted`` label change.
    """
    chosen = [e for e in epochs if layer.stage(e) is not None]
    stages = [layer.stage(e) for e in chosen]
    conf = layer.confidence()
    detail = {"model": layer.model_name,
              "model_confidence": [round(float(conf[e]), 4) for e in chosen],
              "night_context": layer.context_active}
    return chosen, stages, detail


def needs_a_look(layer: ModelLayer, expert: Sequence[str]) -> np.ndarray:
    """Mask of the staged epochs where the model is unsure (< :data:`UNSURE_BELOW`) or
    disagrees with the ``expert`` labels."""
    conf = layer.confidence()
    return layer.done & ((conf < UNSURE_BELOW) | layer.disagreements(list(expert)))
