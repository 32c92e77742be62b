"""Train, predict and cross-validate the EEG-VLM on rendered epochs (no Qt; CPU or CUDA).

Training optimises, jointly, the reasoning LM loss (the chain of thought ending in the
expert stage), the multi-level alignment loss and the direct-answer loss that powers the
fast whole-night pass (``EEGVLM.forward``). Weights are written only as safetensors.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .cot import PROMPT
from .dataset import NightData
from .stages import STAGES
from .vlm.config import VLMConfig
from .vlm.model import EEGVLM
from .vlm.tokenizer import encode_example, pad_batch, train_tokenizer


@dataclass
class TrainSettings:
    """Hyper-parameters of one training run (all stored in the model card)."""

    preset: str = "default"
    fusion: str = "both"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    seed: int = 0
    balance: bool = True  # oversample rare stages (N1) so each batch sees them

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(n: int, stages: np.ndarray, settings: TrainSettings,
             rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled mini-batches; with ``balance``, each stage is drawn ~sqrt-inversely to its count.

    N1 is ~7 % of a night; without it the direct head hardly ever predicts N1.
    """
    if settings.balance:
        counts = np.bincount(stages, minlength=len(STAGES)).astype(float)
        w = 1.0 / np.sqrt(np.maximum(counts[stages], 1.0))
        order = rng.choice(n, size=n, replace=True, p=w / w.sum())
    else:
        order = rng.permutation(n)
    return [order[i:i + settings.batch_size] for i in range(0, n, settings.batch_size)]


def train(data: NightData, settings: TrainSettings, device: str = "auto",
          log: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None):
    """Train a new model on ``data``; returns ``(model, tokenizer, history)``.

    The tokenizer is trained on the prompt and the reasoning targets, so the vocabulary is
    exactly the words the model has to write.
    """
    _seed(settings.seed)
    dev = pick_device(device)
    tok = train_tokenizer([PROMPT] + data.answers)
    cfg = VLMConfig.preset(settings.preset)
    cfg.fusion = settings.fusion
    cfg = cfg.bind_tokenizer(tok)
    model = EEGVLM(cfg).to(dev)
    examples = [encode_example(tok, PROMPT, a) for a in data.answers]
    stages = data.stage_indices()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)
    rng = np.random.default_rng(settings.seed)
    steps_per_epoch = math.ceil(len(data) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 20))
        * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    history = []
    use_amp = dev.type == "cuda"
    t0 = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        sums = np.zeros(4)
        for batch in _batches(len(data), stages, settings, rng):
            if should_stop is not None and should_stop():
                return model.eval(), tok, history
            ids, mask = pad_batch([examples[i][0] for i in batch], int(tok.pad_token_id))
            labels, _ = pad_batch([examples[i][1] for i in batch], -100)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(data.images[batch], torch.tensor(ids, device=dev),
                            torch.tensor(mask, device=dev), torch.tensor(labels, device=dev),
                            torch.as_tensor(stages[batch], device=dev))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            sums += [out.loss.item(), out.lm_loss.item(), out.align_loss.item(),
                     out.direct_loss.item()]
        row = dict(zip(("loss", "lm_loss", "align_loss", "direct_loss"),
                       (sums / steps_per_epoch).round(4).tolist()))
        row.update(epoch=epoch + 1, seconds=round(time.perf_counter() - t0, 1))
        history.append(row)
        if log is not None:
            log(row)
    return model.eval(), tok, history


@torch.no_grad()
def predict_probs(model: EEGVLM, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Stage probabilities ``(n, 5)`` for rendered epochs, batched (the fast path)."""
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model.stage_probs(images[i:i + batch_size]).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(STAGES)))


def cross_validate(data: NightData, k: int, settings: TrainSettings, device: str = "auto",
                   log: Callable[[dict], None] | None = None) -> np.ndarray:
    """Blocked K-fold: every epoch is predicted by a model that never saw its block.

    Returns the out-of-fold probabilities ``(n, 5)`` in the order of ``data``.
    """
    from .protocol import block_folds

    probs = np.zeros((len(data), len(STAGES)))
    for fold, (tr, te) in enumerate(block_folds(np.arange(len(data)), k)):
        model, _, _ = train(data.subset(tr), settings, device,
                            log=(lambda row, f=fold: log({"fold": f, **row})) if log else None)
        probs[te] = predict_probs(model, data.images[te])
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return probs


def write_log(path: Path) -> Callable[[dict], None]:
    """A logger that appends JSON lines to ``path`` and prints them."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(row: dict) -> None:
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    return log
