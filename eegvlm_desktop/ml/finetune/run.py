"""Fine-tune a saved model on expert-corrected epochs (no Qt; CPU, CUDA or several GPUs).

The model folder is loaded with its tokenizer, whose vocabulary never changes (the stage
tokens and every saved id stay valid), and training continues with the joint loss of
:func:`~.training.train` (reasoning LM loss + alignment + direct answer) through the same
batching, loss and LR-schedule code. The whole model trains, or the LM alone
(``freeze_vision``), or LoRA adapters of a pretrained LM (``lora_r``).

Several GPUs, without changing any code: the loop runs under HF ``accelerate`` when the
process was started by a multi-process launcher (``WORLD_SIZE`` > 1)::

    accelerate launch --multi_gpu --num_processes 4 -m eegvlm_desktop finetune \\
        --model model_weights/default --data exports/night1 exports/night2 \\
        --out model_weights/default-ft --eval-data exports/night3
    torchrun --nproc_per_node 4 -m eegvlm_desktop finetune \\
        --model model_weights/default --data exports/night1 --out model_weights/default-ft

Every process loads the model and data, draws the same mini-batches (same seed) and trains
on its share of each (rows ``rank::world``): a step still sees ``batch_size`` examples and
the number of steps does not depend on the number of GPUs; DDP averages the gradients. Only
the main process reports progress, saves and prints. Per process: the alignment loss's
in-batch negatives and the CNN's BatchNorm statistics (DDP gives rank 0's to all at every
step; rank 0's are saved). One process, launched or not, runs the plain loop;
``use_accelerate=True`` forces the wrapper, bit-identical on one CPU process (tested).
Tested with ``torchrun --nproc_per_node 2`` on CPU (gloo); multi-GPU runs were not tested.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
import unicodedata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from eegvlm_desktop.core.export.dataset import NightData
from eegvlm_desktop.core.picture.cot import PROMPT, parse_answer
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.metrics import stage_metrics
from eegvlm_desktop.ml.finetune.settings import FinetuneError, FinetuneResult, FinetuneSettings
from eegvlm_desktop.ml.training import batch_loss, draw_batches, lr_schedule, seed_everything
from eegvlm_desktop.ml.vlm.model import EEGVLM
from eegvlm_desktop.ml.vlm.predict import pick_device, predict_probs
from eegvlm_desktop.ml.vlm.tokenizer import encode_example
from eegvlm_desktop.ml.vlm.weights import load_model

#: Top-level modules of the image side, frozen by ``freeze_vision``.
VISION_PARTS: tuple[str, ...] = ("visual", "enhance", "low_proj", "high_proj")
# Characters our BPE tokenizer has no token for, mapped to ones it has (else NFKC/NFKD).
_FALLBACK = {"≈": "~", "×": "x", "−": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "•": "-",
             "…": "..."}


def fit_answers(tokenizer: Any, answers: list[str]) -> tuple[list[str], dict[str, str]]:
    """Replace the characters the tokenizer could only write as ``<unk>``.

    Our BPE tokenizer knows printable ASCII, a few unit symbols and its corpus's characters;
    anything else (an expert's 'é', '≈') would become ``<unk>``, which the model would learn
    to write. Each becomes an encodable look-alike (``_FALLBACK``, NFKC, NFKD without accents)
    or is dropped. Byte-level tokenizers (pretrained LMs) have no ``<unk>``: nothing changes.

    Returns
    -------
    answers, fixes
        The answers to train on and ``{character: replacement}`` ('' = dropped).
    """
    unk = tokenizer.unk_token_id
    if unk is None:
        return list(answers), {}

    def ok(text: str) -> bool:
        return unk not in tokenizer.encode(text, add_special_tokens=False)

    fixes: dict[str, str] = {}
    for c in sorted(set("".join(answers))):
        if ok(c):
            continue
        nfkd = "".join(x for x in unicodedata.normalize("NFKD", c)
                       if not unicodedata.combining(x))
        options = [_FALLBACK.get(c, ""), " " if c.isspace() else "",
                   unicodedata.normalize("NFKC", c), nfkd]
        fixes[c] = next((o for o in options if o and o != c and ok(o)), "")
    if not fixes:
        return list(answers), {}
    table = str.maketrans(fixes)
    return [a.translate(table) for a in answers], fixes


def _summary(data: NightData) -> dict:
    return {"n_examples": len(data), "stage_counts": {s: data.stages.count(s) for s in STAGES}}


def _image_keys(images: np.ndarray) -> set[bytes]:
    return {hashlib.sha256(np.ascontiguousarray(im).tobytes()).digest() for im in images}


def _check_data(model: EEGVLM, data: NightData, name: str, answers: list[str] | None) -> None:
    """Refuse data the model cannot take, before any training step."""
    s = model.config.vision.image_size
    if len(data) == 0 or data.images.dtype != np.uint8 or data.images.shape[1:] != (s, s, 3):
        raise FinetuneError(f"The '{name}' images must be uint8 of shape (n >= 1, {s}, {s}, 3), "
                            f"but got {data.images.dtype} {tuple(data.images.shape)}.")
    bad = sorted({st for st in data.stages if st not in STAGES})
    if bad:
        raise FinetuneError(f"Invalid stages in the '{name}' parameter: allowed values are "
                            f"{', '.join(STAGES)}, but got {', '.join(map(repr, bad[:5]))}.")
    want, got = model.config.renderer_version, data.meta.get("renderer_version")
    if got is None or str(got) != str(want):
        drawn = ("do not say which renderer version drew them" if got is None else
                 f"were drawn by renderer version {got!r}")
        raise FinetuneError(
            f"The '{name}' images {drawn}, but the model was trained on images of renderer "
            f"version {want!r}; allowed: data of renderer version {want!r}. Export the epochs "
            "again with an app whose renderer matches the model.")
    for i, (stage, answer) in enumerate(zip(data.stages, answers or [])):
        if parse_answer(answer) != stage:  # the LM and direct losses would disagree
            raise FinetuneError(
                f"Example {i} of the '{name}' parameter: its answer ends in stage "
                f"{parse_answer(answer)!r} but its expert stage is {stage!r}; it must end "
                f"with 'Stage: {stage}' (got ...{answer[-60:]!r}).")


def _set_trainable(model: EEGVLM, settings: FinetuneSettings) -> list[torch.nn.Module]:
    """Freeze what the settings keep fixed; returns the modules to keep in eval mode."""
    if settings.lora_r:
        cfg = model.config.lm
        if not cfg.pretrained:
            raise FinetuneError(
                f"Invalid value for the 'lora_r' parameter: LoRA needs a model whose LM is a "
                f"pretrained one, but this model's LM ({cfg.arch}, {cfg.layers} layers) was "
                f"built from a preset and is fully fine-tuned. Allowed: lora_r=0 for this "
                f"model; got lora_r={settings.lora_r}.")
        from eegvlm_desktop.ml.vlm.pretrained import apply_lora

        apply_lora(model.lm, {"r": settings.lora_r, "lora_alpha": 2 * settings.lora_r})
    if not settings.freeze_vision:
        return []
    frozen = [p for p in (getattr(model, n, None) for n in VISION_PARTS) if p is not None]
    for part in frozen:
        part.requires_grad_(False)  # and eval mode in the loop: BatchNorm stats must not move
    return frozen


def _pick(device: str) -> torch.device:
    """``pick_device`` with a clear error for an unknown or absent device."""
    if not (device in ("auto", "cpu", "cuda") or
            (device.startswith("cuda:") and device[5:].isdigit())):
        raise FinetuneError(f"Invalid value for the 'device' parameter: allowed values are "
                            f"'auto', 'cpu', 'cuda' or 'cuda:N', but got {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FinetuneError(f"The 'device' parameter is {device!r}, but torch sees no CUDA "
                            "GPU on this machine; allowed here: 'auto' or 'cpu'.")
    return pick_device(device)


def _metrics(model: EEGVLM, data: NightData | None) -> dict | None:
    if data is None:
        return None
    probs = predict_probs(model.eval(), data.images)
    return stage_metrics(data.stages, np.array(STAGES)[probs.argmax(1)].tolist())


def finetune(model_folder: str | Path, data: NightData, settings: FinetuneSettings,
             device: str = "auto", *, log: Callable[[dict], None] | None = None,
             progress: Callable[[int, int, dict], None] | None = None,
             should_stop: Callable[[], bool] | None = None,
             eval_data: NightData | None = None,
             use_accelerate: bool | None = None) -> FinetuneResult:
    """Continue training the model in ``model_folder`` on ``data``.

    Parameters
    ----------
    model_folder : str or Path
        A model folder (``save_model``); only read.
    data : NightData
        The fine-tuning examples; each answer must end with its expert stage.
    settings : FinetuneSettings
        Hyper-parameters.
    device : str
        'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'; under a multi-process
        launch each process takes its own GPU.
    log, progress : callable, optional
        ``log(row)`` per epoch and ``progress(done_steps, total_steps, {"epoch", "loss"})``
        per step, as in ``train`` (main process only).
    should_stop : callable, optional
        Polled before every step: True ends the run once the current step is done, with
        ``stopped=True``. Under a multi-process launch it must answer alike in every process.
    eval_data : NightData, optional
        Held-out examples, none of whose images may be in ``data``: the direct answer is
        scored on them before and after fine-tuning.
    use_accelerate : bool, optional
        Run the loop under ``accelerate.Accelerator``; default: only when launched with
        several processes (``WORLD_SIZE`` > 1).

    Raises
    ------
    FinetuneError
        Bad settings or device; data the model cannot take (renderer version, stages, image
        size, too long, answer not ending in its stage); ``eval_data`` sharing images with
        ``data``; LoRA for an LM built from a preset.
    ModelFolderError
        The model folder is missing, corrupted or incomplete.
    """
    settings.validate()
    t0 = time.perf_counter()
    seed_everything(settings.seed)
    dev = _pick(device)
    if use_accelerate is None:
        use_accelerate = int(os.environ.get("WORLD_SIZE", "1")) > 1
    acc = None
    if use_accelerate:
        from accelerate import Accelerator

        # mixed_precision="no": bf16 autocast on CUDA comes from batch_loss, as in train();
        # an fp16 'accelerate config' would otherwise add a GradScaler on top.
        acc = Accelerator(cpu=dev.type == "cpu", mixed_precision="no")
        dev = acc.device
    model, tok, manifest = load_model(model_folder, dev)
    answers, fixes = fit_answers(tok, data.answers)
    _check_data(model, data, "data", answers)
    if eval_data is not None:
        _check_data(model, eval_data, "eval_data", None)
        shared = len(_image_keys(eval_data.images) & _image_keys(data.images))
        if shared:
            raise FinetuneError(
                f"The 'eval_data' parameter shares {shared} epoch image(s) with the fine-tuning "
                "'data', so its accuracy would not be held out. Give eval data from other "
                "epochs or recordings.")
    examples = [encode_example(tok, PROMPT, a) for a in answers]
    longest = max(range(len(examples)), key=lambda i: len(examples[i][0]))
    room = model.config.lm.max_positions - model.n_image_tokens
    if len(examples[longest][0]) > room:
        raise FinetuneError(
            f"Example {longest} of the 'data' parameter is {len(examples[longest][0])} tokens "
            f"long with the prompt; this model reads at most {room} text tokens. Shorten its "
            "reasoning text.")
    metrics_before = _metrics(model, eval_data)
    frozen = _set_trainable(model, settings)
    stages = data.stage_indices()
    opt_raw = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                lr=settings.lr, weight_decay=settings.weight_decay)
    rank, world, main = 0, 1, True
    wrapped, opt = model, opt_raw
    if acc is not None:
        wrapped, opt = acc.prepare(model, opt_raw)
        rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    total = settings.epochs * math.ceil(len(data) / settings.batch_size)
    # Not prepared: an AcceleratedScheduler steps once per process, and here every process
    # runs every step.
    sched = lr_schedule(opt_raw, total)
    rng = np.random.default_rng(settings.seed)
    history: list[dict] = []
    done, stopped = 0, False
    for epoch in range(settings.epochs):
        model.train()
        for part in frozen:
            part.eval()
        sums, n_steps = np.zeros(4), 0
        for batch in draw_batches(len(data), stages, settings, rng):
            if should_stop is not None and should_stop():
                stopped = True
                break
            if world > 1:  # wrap around, so a short last batch still gives every rank rows
                batch = np.resize(batch, max(len(batch), world))[rank::world]
            out = batch_loss(wrapped, data.images, examples, stages, batch,
                             int(tok.pad_token_id), dev)
            opt.zero_grad(set_to_none=True)
            if acc is not None:
                acc.backward(out.loss)
                acc.clip_grad_norm_(wrapped.parameters(), 1.0)
            else:
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            sums += [x.item() for x in (out.loss, out.lm_loss, out.align_loss, out.direct_loss)]
            n_steps, done = n_steps + 1, done + 1
            if progress is not None and main:
                progress(done, total, {"epoch": epoch + 1, "loss": round(out.loss.item(), 4)})
        if stopped and n_steps == 0:
            break
        if world > 1:
            sums = acc.reduce(torch.tensor(sums, device=dev), "mean").cpu().numpy()
        row = dict(zip(("loss", "lm_loss", "align_loss", "direct_loss"),
                       (sums / n_steps).round(4).tolist()))
        row.update(epoch=epoch + 1, seconds=round(time.perf_counter() - t0, 1))
        if stopped:
            row.update(partial=True, steps=n_steps)
        history.append(row)
        if log is not None and main:
            log(row)
        if stopped:
            break
    if acc is not None:
        model = acc.unwrap_model(wrapped)
    model.eval()
    return FinetuneResult(
        model=model, tokenizer=tok, history=history, stopped=stopped, steps_done=done,
        total_steps=total, settings=settings, parent_folder=str(model_folder),
        parent_manifest=manifest, data_summary={**_summary(data), "text_fixes": fixes},
        metrics_before=metrics_before, metrics_after=_metrics(model, eval_data),
        eval_summary=None if eval_data is None else {**_summary(eval_data),
                                                     "meta": dict(eval_data.meta)},
        device=str(dev), num_processes=world, is_main_process=main,
        seconds=round(time.perf_counter() - t0, 1))
