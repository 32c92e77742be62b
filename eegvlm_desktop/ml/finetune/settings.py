"""The settings and the result of a fine-tuning run, and its error.

Their own module so that the run (:mod:`.run`) and the card (:mod:`.card`) both import them
and neither imports the other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eegvlm_desktop.core.errors import EEGVLMError

if TYPE_CHECKING:
    from eegvlm_desktop.ml.vlm.model import EEGVLM


class FinetuneError(EEGVLMError, ValueError):
    """Fine-tuning cannot run with these settings, this model or this data."""


@dataclass
class FinetuneSettings:
    """Hyper-parameters of one fine-tuning run (all stored in the model card).

    Gentler than training's defaults (few epochs, low LR), so a few hundred corrected
    epochs adjust the model instead of overwriting what it learnt.
    """

    epochs: int = 5
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    seed: int = 0
    balance: bool = True  # as in training: rare stages (N1) drawn more often
    freeze_vision: bool = False  # only the LM trains (ViT, CNN and projectors frozen)
    lora_r: int = 0  # > 0: LoRA adapters of this rank on a pretrained LM, its base frozen

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def validate(self) -> None:
        """Raise :class:`FinetuneError` naming the first bad field."""
        for name, low in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("lora_r", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise FinetuneError(f"Invalid value for the '{name}' parameter: it must be a "
                                    f"whole number >= {low}, but got {v!r}.")
        for name, rule in (("lr", "> 0"), ("weight_decay", ">= 0")):
            v = getattr(self, name)
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    or v < 0 or (v == 0 and name == "lr")):
                raise FinetuneError(f"Invalid value for the '{name}' parameter: it must be a "
                                    f"finite number {rule}, but got {v!r}.")


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns (:func:`save_finetuned` writes it as a model folder).

    ``history``: one row per epoch run (mean losses, ``epoch``, ``seconds``); a run stopped
    mid-epoch ends with a row marked ``partial: True`` with its ``steps``. The metrics are
    :func:`~.metrics.stage_metrics` of the direct answer on ``eval_data`` (None without).
    """

    model: EEGVLM
    tokenizer: Any
    history: list[dict]
    stopped: bool
    steps_done: int
    total_steps: int
    settings: FinetuneSettings
    parent_folder: str
    parent_manifest: dict
    data_summary: dict  # n_examples, stage_counts, text_fixes
    metrics_before: dict | None = None
    metrics_after: dict | None = None
    eval_summary: dict | None = None  # n_examples, stage_counts, meta
    device: str = "cpu"
    num_processes: int = 1
    is_main_process: bool = True
    seconds: float = 0.0

    @property
    def final(self) -> dict | None:
        """The last history row, or None when no step ran."""
        return self.history[-1] if self.history else None
