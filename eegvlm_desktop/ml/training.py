"""Train, predict and cross-validate the EEG-VLM on rendered epochs (no Qt; CPU or CUDA).

Training optimises, jointly, the reasoning LM loss (the chain of thought ending in the
expert stage), the multi-level alignment loss and the direct-answer loss that powers the
fast whole-night pass (``EEGVLM.forward``). Weights are written only as safetensors.
With a checkpoint folder, every epoch is checkpointed (:mod:`.checkpoint`) and a killed or
stopped run resumes where its last complete epoch ended.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from eegvlm_desktop.core.export.dataset import NightData
from eegvlm_desktop.core.picture.cot import PROMPT
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.ml.checkpoint import data_fingerprint, load_checkpoint, save_checkpoint
from eegvlm_desktop.ml.vlm.config import VLMConfig
from eegvlm_desktop.ml.vlm.model import EEGVLM, VLMOutput
from eegvlm_desktop.ml.vlm.predict import pick_device, predict_probs
from eegvlm_desktop.ml.vlm.tokenizer import encode_example, pad_batch, train_tokenizer


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
    # Perturbed renderings per example (core/picture/augment.py); each time an example is drawn,
    # one of its augment + 1 images (the original or a variant) is used at random, so the
    # number of steps, and the compute, is the same as without.
    augment: int = 0
    # Pretrained parts (see ml/vlm/factory.new_model); empty = built from the preset.
    vision_arch: str = ""
    vision_checkpoint: str = ""
    lm_pretrained: str = ""
    lora: dict = field(default_factory=dict)

    @property
    def uses_pretrained(self) -> bool:
        return bool(self.vision_arch or self.vision_checkpoint or self.lm_pretrained)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (training and fine-tuning runs)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draw_batches(n: int, stages: np.ndarray, settings: TrainSettings,
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


Progress = Callable[[int, int, dict], None]


def lr_schedule(optimizer: torch.optim.Optimizer, total: int
                ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5 % of ``total`` steps, then cosine decay to 0.

    Shared with :mod:`.finetune`, so both loops follow the same schedule.
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, total // 20))
        * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


def batch_loss(model: torch.nn.Module, images: np.ndarray,
               examples: Sequence[tuple[list[int], list[int]]], stages: np.ndarray,
               batch: np.ndarray, pad_id: int, device: torch.device) -> VLMOutput:
    """The joint loss of one mini-batch (``model`` may be a DDP wrapper of an EEGVLM).

    Parameters
    ----------
    model : EEGVLM or a wrapper of one
        Called as ``model(images, input_ids, attention_mask, labels, stage_labels)``.
    images : ndarray
        All rendered epochs ``(n, S, S, 3)`` uint8; ``batch`` picks the rows.
    examples : sequence of (input_ids, labels)
        ``encode_example`` of every answer, in the order of ``images``.
    stages : ndarray
        Stage index of every example.
    batch : ndarray of int
        Rows of this mini-batch.
    pad_id : int
        The tokenizer's pad id.
    device : torch.device
        Where the model is; bfloat16 autocast on CUDA (as every training run uses).
    """
    ids, mask = pad_batch([examples[i][0] for i in batch], pad_id)
    labels, _ = pad_batch([examples[i][1] for i in batch], -100)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return model(images[batch], torch.tensor(ids, device=device),
                     torch.tensor(mask, device=device), torch.tensor(labels, device=device),
                     torch.as_tensor(stages[batch], device=device))


def train(data: NightData, settings: TrainSettings, device: str = "auto",
          log: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          checkpoint_dir: str | Path | None = None, resume: bool = False,
          progress: Progress | None = None):
    """Train a new model on ``data``, or resume one; returns ``(model, tokenizer, history)``.

    The tokenizer is trained on the prompt and the reasoning targets, so the vocabulary is
    exactly the words the model has to write.

    Parameters
    ----------
    data : NightData
        The training examples.
    settings : TrainSettings
        Hyper-parameters.
    device : str
        'auto' (CUDA when present), 'cpu' or 'cuda'.
    log : callable, optional
        Called with one dict per completed epoch (losses, epoch, cumulative seconds).
    should_stop : callable, optional
        Polled before every step; True ends training at once (the partial epoch is not
        checkpointed, so the last checkpoint is the last *complete* epoch).
    checkpoint_dir : str or Path, optional
        Where a checkpoint is written after every epoch (see :mod:`.checkpoint`).
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` when there is one (else start
        afresh). Every setting but ``epochs`` must match the checkpoint's, and the data
        must be the same. Resuming with the same ``epochs`` reproduces an uninterrupted run
        bit for bit on CPU; with more epochs the LR schedule is stretched to the new total
        from the resumed step on.
    progress : callable, optional
        ``progress(done_steps, total_steps, {"epoch": e, "loss": x})`` after every optimizer
        step; ``done_steps`` counts the steps of the resumed epochs too.

    Raises
    ------
    CheckpointError
        ``resume`` with a checkpoint that is corrupt, incomplete, or made with other
        settings or data.
    """
    seed_everything(settings.seed)
    dev = pick_device(device)
    n_var = 0 if data.variants is None else int(data.variants.shape[1])
    if isinstance(settings.augment, bool) or not isinstance(settings.augment, int) \
            or not 0 <= settings.augment <= n_var:
        raise ValueError("Invalid value for the 'augment' setting: it must be an integer from 0 "
                         f"to the {n_var} variants per example the data holds (build them with "
                         f"build_night(..., variants=K)), but got {settings.augment!r}.")
    ckpt, fingerprint = None, None
    if checkpoint_dir is not None:
        fingerprint = data_fingerprint(data.images, data.stages, data.answers)
        if settings.augment:
            fingerprint = data_fingerprint(data.variants[:, :settings.augment],
                                           [fingerprint], [])
        if resume:
            ckpt = load_checkpoint(checkpoint_dir)
            if ckpt is not None:
                ckpt.check(settings.to_dict(), fingerprint)
    # Resuming keeps the checkpoint's tokenizer: retraining one could renumber the vocabulary.
    if settings.uses_pretrained:
        from eegvlm_desktop.ml.vlm.factory import new_model

        # A pretrained LM brings its own tokenizer, so a resumed run rebuilds the same one.
        model, tok = new_model(settings.preset, settings.fusion, [PROMPT] + data.answers,
                               vision_arch=settings.vision_arch or None,
                               vision_checkpoint=settings.vision_checkpoint or None,
                               lm_pretrained=settings.lm_pretrained or None,
                               lora=settings.lora or None)
        model = model.to(dev)
    else:
        tok = ckpt.tokenizer if ckpt is not None else train_tokenizer([PROMPT] + data.answers)
        cfg = VLMConfig.preset(settings.preset)
        cfg.fusion = settings.fusion
        cfg = cfg.bind_tokenizer(tok)
        model = EEGVLM(cfg).to(dev)
    examples = [encode_example(tok, PROMPT, a) for a in data.answers]
    stages = data.stage_indices()
    # Only trainable parameters: with LoRA the base LM is frozen.
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr,
                            weight_decay=settings.weight_decay)
    rng = np.random.default_rng(settings.seed)
    steps_per_epoch = math.ceil(len(data) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    sched = lr_schedule(opt, total)
    history: list[dict] = []
    if ckpt is not None:
        # After seed_everything and model building on purpose: the checkpoint's RNG states win.
        ckpt.restore(model, opt, sched, rng)
        history = ckpt.history
    first = len(history)
    done = first * steps_per_epoch
    seconds0 = history[-1]["seconds"] if history else 0.0
    t0 = time.perf_counter()
    for epoch in range(first, settings.epochs):
        model.train()
        sums = np.zeros(4)
        for batch in draw_batches(len(data), stages, settings, rng):
            if should_stop is not None and should_stop():
                return model.eval(), tok, history
            images, ex, st, rows = data.images, examples, stages, batch
            if settings.augment:
                # Drawn only when augmenting, so runs without keep their random stream.
                pick = rng.integers(0, settings.augment + 1, size=len(batch))
                images = np.stack([data.images[i] if v == 0 else data.variants[i, v - 1]
                                   for i, v in zip(batch, pick)])
                ex, st, rows = [examples[i] for i in batch], stages[batch], np.arange(len(batch))
            out = batch_loss(model, images, ex, st, rows, int(tok.pad_token_id), dev)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses = [out.loss.item(), out.lm_loss.item(), out.align_loss.item(),
                      out.direct_loss.item()]
            sums += losses
            done += 1
            if progress is not None:
                progress(done, total, {"epoch": epoch + 1, "loss": round(losses[0], 4)})
        row = dict(zip(("loss", "lm_loss", "align_loss", "direct_loss"),
                       (sums / steps_per_epoch).round(4).tolist()))
        row.update(epoch=epoch + 1, seconds=round(seconds0 + time.perf_counter() - t0, 1))
        history.append(row)
        if checkpoint_dir is not None:
            # Before log(): a logged epoch is always one a resume can start after.
            save_checkpoint(checkpoint_dir, epoch=epoch + 1, model=model, optimizer=opt,
                            scheduler=sched, tokenizer=tok, batch_rng=rng,
                            settings=settings.to_dict(), history=history,
                            data_sha256=fingerprint)
        if log is not None:
            log(row)
    return model.eval(), tok, history


def cross_validate(data: NightData, k: int, settings: TrainSettings, device: str = "auto",
                   log: Callable[[dict], None] | None = None,
                   progress: Progress | None = None,
                   folds: Sequence[int] | None = None,
                   on_model: Callable[[int, EEGVLM, Any, np.ndarray], None] | None = None,
                   checkpoint_root: str | Path | None = None, resume: bool = False
                   ) -> np.ndarray:
    """Blocked K-fold: every epoch is predicted by a model that never saw its block.

    Parameters
    ----------
    data : NightData
        The examples, in time order.
    k : int
        Number of contiguous blocks (see :func:`~.protocol.block_folds`).
    settings : TrainSettings
        Training settings of every fold's model.
    device : str
        'auto', 'cpu' or 'cuda'.
    log : callable, optional
        Receives each fold's epoch rows with a ``fold`` key added.
    progress : callable, optional
        ``progress(done, total, info)`` after every step, counted over all the folds that
        run (``info`` has ``fold`` too).
    folds : sequence of int, optional
        Run only these folds (0-based, in time order); default all ``k``.
    on_model : callable, optional
        ``on_model(fold, model, tokenizer, test_indices)`` with each fold's trained model,
        before it is dropped (e.g. to generate reasoning on its held-out block).
    checkpoint_root : str or Path, optional
        Each fold writes a checkpoint after every epoch in ``<root>/fold<k>.checkpoints``.
    resume : bool
        With ``checkpoint_root``: continue each fold from its checkpoint, if it has one (a
        fold that had finished is only reloaded), so a CV cut short on a CPU loses at most
        one epoch per fold. Bit for bit the same as an uninterrupted run on CPU.

    Returns
    -------
    ndarray
        Out-of-fold probabilities ``(n, 5)`` in the order of ``data``; rows of folds that
        were not run are NaN.

    Raises
    ------
    ValueError
        ``k`` out of range, or ``folds`` not distinct integers from 0 to k-1.
    """
    from eegvlm_desktop.core.staging.protocol import block_folds

    splits = block_folds(np.arange(len(data)), k)
    run = list(range(k)) if folds is None else list(folds)
    if (not run or len(set(run)) != len(run)
            or any(isinstance(f, bool) or not isinstance(f, (int, np.integer))
                   or not 0 <= f < k for f in run)):
        raise ValueError("Invalid value for the 'folds' parameter: it must list distinct "
                         f"fold numbers from 0 to {k - 1}, but got {folds!r}.")
    steps = [settings.epochs * math.ceil(len(splits[f][0]) / settings.batch_size)
             for f in run]
    probs = np.full((len(data), len(STAGES)), np.nan)
    offset = 0
    for fold, n_steps in zip(run, steps):
        tr, te = splits[fold]
        prog = (lambda done, _, info, f=fold, o=offset:
                progress(o + done, sum(steps), {"fold": f, **info})) if progress else None
        ckpt = (None if checkpoint_root is None
                else Path(checkpoint_root) / f"fold{fold}.checkpoints")
        model, tok, _ = train(data.subset(tr), settings, device, progress=prog,
                              log=(lambda row, f=fold: log({"fold": f, **row})) if log
                              else None, checkpoint_dir=ckpt, resume=resume)
        probs[te] = predict_probs(model, data.images[te])
        if on_model is not None:
            on_model(fold, model, tok, te)
        offset += n_steps
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return probs


def write_log(path: Path, echo: Callable[[str], None] | None = None
              ) -> Callable[[dict], None]:
    """A logger that appends JSON lines to ``path`` and echoes them.

    ``echo`` receives each line (default: print to stdout); the CLI passes one that keeps
    its progress bar intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(row: dict) -> None:
        line = json.dumps(row)
        with path.open("a") as f:
            f.write(line + "\n")
        if echo is None:
            print(line, flush=True)
        else:
            echo(line)

    return log
