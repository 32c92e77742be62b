"""Run a model on rendered epochs: the device to use and batched stage probabilities.

Kept beside the model (not in training) because inference, explanations, evaluation and
fine-tuning all use it, and ``vlm`` must not import ``training`` (which imports ``vlm``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eegvlm_desktop.core.stages import STAGES

if TYPE_CHECKING:  # the stage-only model (vlm/stager.py) is staged here too, without open_clip
    from eegvlm_desktop.ml.vlm.model import EEGVLM


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; any other name is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def predict_probs(model: EEGVLM | Any, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Stage probabilities ``(n, 5)`` for rendered epochs, batched (the fast path)."""
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model.stage_probs(images[i:i + batch_size]).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(STAGES)))
