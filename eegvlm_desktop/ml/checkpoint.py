"""Resumable training checkpoints, written without pickle (safetensors + JSON only).

A checkpoint folder holds::

    checkpoint.json              the pointer: which epoch folder is current, the sha256 of
                                 its files, and every small thing (epochs done, settings,
                                 data fingerprint, history, scheduler state, AdamW
                                 hyper-parameters, python / numpy RNG states)
    epoch-0003-<token>/
        tensors.safetensors      model.<name>      the model's state dict
                                 optim.<i>.<key>   AdamW state of parameter i (step,
                                                   exp_avg, exp_avg_sq)
                                 rng.torch, rng.cuda.<d>   torch RNG states (uint8)
        tokenizer/               the tokenizer (save_tokenizer)

Why a pointer file: a checkpoint is several files, and no single rename can replace them
all at once. Each epoch therefore goes into a *new* folder (the random token means it can
never be one the pointer names), then ``checkpoint.json`` is replaced atomically to name it,
then older folders are deleted. A process killed at any moment leaves ``checkpoint.json``
naming a complete folder; a half-written folder is never named and is removed later.

``torch.save`` is not used anywhere: loading a pickle can run arbitrary code, and a
checkpoint folder is the kind of file people copy between machines.
"""
from __future__ import annotations

import hashlib
import json
import random
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from eegvlm_desktop.core.atomic import atomic_write_bytes, atomic_write_text, fsync_directory
from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.ml.vlm.tokenizer import load_tokenizer, save_tokenizer

CHECKPOINT_FORMAT = 1
POINTER_FILE = "checkpoint.json"
TENSORS_FILE = "tensors.safetensors"
TOKENIZER_DIR = "tokenizer"
_EPOCH_PREFIX = "epoch-"


class CheckpointError(EEGVLMError):
    """A checkpoint cannot be used: corrupt, incomplete, or made for another run."""


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def data_fingerprint(images: np.ndarray, stages: list[str], answers: list[str]) -> str:
    """sha256 of the training examples, so a run is never resumed on other data.

    Hashing every image costs about a second per GB, nothing next to an epoch of training.
    """
    h = hashlib.sha256()
    arr = np.ascontiguousarray(images)
    h.update(json.dumps([str(arr.dtype), list(arr.shape), stages, answers]).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``opt.state_dict()`` into tensors (``optim.<i>.<key>``) and a JSON part."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict] = {}
    for idx, entry in sd["state"].items():
        state[str(idx)] = {}
        for key, val in entry.items():
            if torch.is_tensor(val):
                tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
                state[str(idx)][key] = "tensor"
            else:  # a plain number (older optimizers kept 'step' as a float)
                state[str(idx)][key] = val
    return tensors, {"state": state, "param_groups": sd["param_groups"]}


def _optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict) -> None:
    """Inverse of :func:`_optimizer_to_flat`; ``load_state_dict`` moves tensors to the params."""
    live = opt.state_dict()["param_groups"]
    if len(live) != len(meta["param_groups"]) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(live, meta["param_groups"])):
        raise ValueError("the optimizer's parameter groups differ from the checkpoint's")
    groups = []
    for cur, saved in zip(live, meta["param_groups"]):
        # JSON turned tuples (AdamW 'betas') into lists; give them back their type.
        groups.append({k: tuple(v) if isinstance(cur.get(k), tuple) else v
                       for k, v in saved.items()})
    state = {int(idx): {key: tensors[f"optim.{idx}.{key}"] if val == "tensor" else val
                        for key, val in entry.items()}
             for idx, entry in meta["state"].items()}
    opt.load_state_dict({"state": state, "param_groups": groups})


def _rng_state(batch_rng: np.random.Generator) -> tuple[dict[str, torch.Tensor], dict]:
    """Every random state a training epoch may draw from, as tensors + JSON."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state(legacy=False)
    legacy["state"]["key"] = legacy["state"]["key"].tolist()
    tensors = {"rng.torch": torch.get_rng_state()}
    # is_initialized(): on a CPU run, asking for CUDA states would start CUDA for nothing.
    n_cuda = torch.cuda.device_count() if torch.cuda.is_initialized() else 0
    for d, st in enumerate(torch.cuda.get_rng_state_all() if n_cuda else []):
        tensors[f"rng.cuda.{d}"] = st.cpu()
    return tensors, {"python": [version, list(internal), gauss], "numpy_global": legacy,
                     "batching": batch_rng.bit_generator.state, "cuda_devices": n_cuda}


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict,
                   batch_rng: np.random.Generator) -> None:
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    legacy = dict(meta["numpy_global"])
    legacy["state"] = dict(legacy["state"], key=np.asarray(legacy["state"]["key"], np.uint32))
    np.random.set_state(legacy)
    batch_rng.bit_generator.state = meta["batching"]
    torch.set_rng_state(tensors["rng.torch"])
    # A checkpoint may be resumed on a machine with fewer GPUs (or none): the states of
    # devices that exist here are restored, the others cannot matter.
    n_here = torch.cuda.device_count() if torch.cuda.is_initialized() else 0
    for d in range(min(n_here, int(meta.get("cuda_devices", 0)))):
        torch.cuda.set_rng_state(tensors[f"rng.cuda.{d}"], d)


def save_checkpoint(folder: str | Path, *, epoch: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, tokenizer: Any,
                    batch_rng: np.random.Generator, settings: dict, history: list[dict],
                    data_sha256: str) -> Path:
    """Write the state after ``epoch`` completed epochs into ``folder``, atomically.

    Parameters
    ----------
    folder : str or Path
        The checkpoint folder (created). Older checkpoints in it are removed once this one
        is complete.
    epoch : int
        Number of epochs done.
    model, optimizer, scheduler
        The model, its AdamW optimizer and LR scheduler (``state_dict`` JSON-able).
    tokenizer : PreTrainedTokenizerFast
        The tokenizer the model was built with.
    batch_rng : numpy.random.Generator
        The generator that draws the mini-batches.
    settings : dict
        ``TrainSettings.to_dict()``; a resume with other settings is refused.
    history : list of dict
        One row per epoch done.
    data_sha256 : str
        :func:`data_fingerprint` of the training examples.

    Returns
    -------
    Path
        The pointer file, ``folder/checkpoint.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sub = folder / f"{_EPOCH_PREFIX}{epoch:04d}-{secrets.token_hex(4)}"
    sub.mkdir()
    # contiguous(): safetensors refuses views; cpu(): the checkpoint must load anywhere.
    tensors = {f"model.{k}": v.detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    rng_tensors, rng_meta = _rng_state(batch_rng)
    blob = save_tensors({**tensors, **opt_tensors, **rng_tensors}, metadata={"format": "pt"})
    atomic_write_bytes(sub / TENSORS_FILE, blob)
    files = {TENSORS_FILE: _sha256(blob)}
    for path in save_tokenizer(tokenizer, sub / TOKENIZER_DIR):
        files[path.relative_to(sub).as_posix()] = _sha256(path.read_bytes())
    fsync_directory(sub)
    pointer = {"format": CHECKPOINT_FORMAT, "folder": sub.name, "files": files,
               "epoch": int(epoch), "settings": settings, "data_sha256": data_sha256,
               "history": history, "scheduler": scheduler.state_dict(),
               "optimizer": opt_meta, "rng": rng_meta, "torch": torch.__version__}
    path = folder / POINTER_FILE
    atomic_write_text(path, json.dumps(pointer, indent=1))
    for old in folder.glob(f"{_EPOCH_PREFIX}*"):
        if old.is_dir() and old.name != sub.name:
            shutil.rmtree(old, ignore_errors=True)
    return path


def peek_checkpoint(folder: str | Path) -> dict | None:
    """The JSON part of the checkpoint in ``folder`` (no tensors read), or None if none.

    Raises
    ------
    CheckpointError
        ``checkpoint.json`` exists but cannot be read.
    """
    path = Path(folder) / POINTER_FILE
    if not path.is_file():
        return None
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
        if pointer.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {pointer.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        for key in ("folder", "files", "epoch", "settings", "history", "scheduler",
                    "optimizer", "rng", "data_sha256"):
            if key not in pointer:
                raise ValueError(f"no {key!r} entry")
        if not isinstance(pointer["files"], dict):
            raise ValueError("'files' is not a table")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise CheckpointError(f"The checkpoint file '{path}' cannot be read ({err}). Delete "
                              "the checkpoint folder, or train without resume.") from err
    return pointer


@dataclass
class Checkpoint:
    """A checkpoint read back from disk: :meth:`check` it, then :meth:`restore` it."""

    folder: Path
    pointer: dict
    tensors: dict[str, torch.Tensor]
    tokenizer: Any

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return int(self.pointer["epoch"])

    @property
    def history(self) -> list[dict]:
        return list(self.pointer["history"])

    def check(self, settings: dict, data_sha256: str) -> None:
        """Refuse to resume with other settings (``epochs`` may change) or other data.

        Raises
        ------
        CheckpointError
            Naming each differing setting with the checkpoint's and the requested value.
        """
        saved = self.pointer["settings"]
        diff = [f"{k}: checkpoint {saved.get(k)!r}, requested {settings.get(k)!r}"
                for k in sorted(set(saved) | set(settings))
                if k != "epochs" and saved.get(k) != settings.get(k)]
        if diff:
            raise CheckpointError(
                f"Invalid value for the 'settings' parameter: the checkpoint in "
                f"'{self.folder}' was trained with other settings ({'; '.join(diff)}). "
                "Resume with the checkpoint's settings (only 'epochs' may differ), or start "
                "afresh without resume or with another checkpoint folder.")
        if self.pointer["data_sha256"] != data_sha256:
            raise CheckpointError(
                f"Invalid value for the 'data' parameter: the checkpoint in '{self.folder}' "
                "was trained on other examples than the ones given (their fingerprint "
                "differs). Resume with the same recordings and hypnograms, or start afresh "
                "without resume or with another checkpoint folder.")

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: Any, batch_rng: np.random.Generator) -> None:
        """Load weights, optimizer, scheduler and every RNG state into the live objects.

        Raises
        ------
        CheckpointError
            The tensors do not fit the model or optimizer.
        """
        model_state = {k[len("model."):]: v for k, v in self.tensors.items()
                       if k.startswith("model.")}
        try:
            model.load_state_dict(model_state, strict=True)
            _optimizer_from_flat(optimizer, self.tensors, self.pointer["optimizer"])
            scheduler.load_state_dict(self.pointer["scheduler"])
            _set_rng_state(self.tensors, self.pointer["rng"], batch_rng)
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"The checkpoint in '{self.folder}' does not fit this model (keys or shapes "
                f"differ: {str(err)[:300]}). Delete the checkpoint folder, or train without "
                "resume.") from err


def load_checkpoint(folder: str | Path) -> Checkpoint | None:
    """Read and verify the current checkpoint of ``folder``; None when it holds none.

    Raises
    ------
    CheckpointError
        A file named by ``checkpoint.json`` is missing, fails its sha256, or cannot be read.
    """
    folder = Path(folder)
    pointer = peek_checkpoint(folder)
    if pointer is None:
        return None
    sub = folder / str(pointer["folder"])
    advice = "Delete the checkpoint folder, or train without resume."
    for name, digest in pointer["files"].items():
        path = sub / name
        if not path.is_file():
            raise CheckpointError(f"The checkpoint in '{folder}' is incomplete: '{sub.name}/"
                                  f"{name}' is missing. {advice}")
        data = path.read_bytes()
        if _sha256(data) != digest:
            raise CheckpointError(f"'{sub.name}/{name}' in checkpoint folder '{folder}' is "
                                  f"corrupted (its sha256 does not match {POINTER_FILE}). "
                                  f"{advice}")
        if name == TENSORS_FILE:
            try:
                tensors = load_tensors(data)
            except (SafetensorError, ValueError) as err:
                raise CheckpointError(f"'{sub.name}/{name}' in checkpoint folder '{folder}' "
                                      f"cannot be read ({err}). {advice}") from err
    if TENSORS_FILE not in pointer["files"]:
        raise CheckpointError(f"{POINTER_FILE} in '{folder}' lists no {TENSORS_FILE}. {advice}")
    try:
        tokenizer = load_tokenizer(sub / TOKENIZER_DIR)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"The tokenizer of the checkpoint in '{folder}' cannot be loaded "
                              f"({err}). {advice}") from err
    return Checkpoint(folder, pointer, tensors, tokenizer)
