"""Save and load a model folder: safetensors + config + tokenizer + a checked MANIFEST.

Folder layout::

    model.safetensors      state dict (safetensors only: loading never runs pickled code);
                           LoRA adapters merged in, tied weights stored once
    config.json            VLMConfig (for a pretrained LM it embeds that LM's transformers
                           config, so neither the original LM folder nor the original vision
                           checkpoint is needed to load)
    tokenizer/             PreTrainedTokenizerFast files (its own folder, see tokenizer.py)
    MANIFEST.json          sha256 of every file above, renderer version, channels, stages,
                           parameter count, the model card and (optionally) the night-context
                           stage-transition model (``"sequence"``, see core/staging/sequence.py)

Every problem found on load raises :class:`ModelFolderError`, whose message names the folder,
what is wrong and what to do; the GUI shows it as is.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from eegvlm_desktop.core.atomic import atomic_write_text
from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.staging.sequence import StageSequenceModel
from eegvlm_desktop.ml.vlm.config import VLMConfig

if TYPE_CHECKING:
    from eegvlm_desktop.ml.vlm.model import EEGVLM
# The model, its towers (open_clip, transformers) and the tokenizer are imported inside the
# functions that build them: check_folder and the stage-only model (vlm/stager.py) need none
# of them, and importing them costs ~2.5 s and ~290 MB in a fresh process on 2 cores.

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"
MANIFEST_FILE = "MANIFEST.json"
MANIFEST_FORMAT = 1


class ModelFolderError(EEGVLMError):
    """A model folder is missing, incomplete, corrupted or made for another renderer."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tied_keys(state: dict[str, torch.Tensor]) -> set[str]:
    """Keys whose tensor is the same memory as an earlier key's (tied embeddings).

    save_file refuses shared tensors; storing each once is enough, because the rebuilt model
    ties them again, so loading the first key fills both. Anything that writes a state dict
    with safetensors (e.g. training checkpoints) can leave these keys out the same way and
    accept them as missing with ``load_state_dict(strict=False)``.
    """
    seen: set[tuple] = set()
    tied = set()
    for key, t in state.items():
        if t.numel() == 0:  # empty tensors may share a null pointer without being tied
            continue
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                 tuple(t.stride()))
        if ident in seen:
            tied.add(key)
        seen.add(ident)
    return tied


def save_model(model: EEGVLM, tokenizer: Any, folder: str | Path, card: dict[str, Any],
               sequence: StageSequenceModel | None = None) -> Path:
    """Write a complete model folder.

    Parameters
    ----------
    model : EEGVLM
        The model; its config must have been bound to ``tokenizer``.
    tokenizer : PreTrainedTokenizerFast
        The tokenizer the model was trained with.
    folder : str or Path
        Target folder (created; existing files of the same names are overwritten).
    card : dict
        JSON-serialisable model card (data, training, metrics, licence ...).
    sequence : StageSequenceModel, optional
        The stage-transition model counted from the training hypnograms (night context).

    Returns
    -------
    Path
        The manifest path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from eegvlm_desktop.ml.vlm.pretrained import merged_state_dict
    from eegvlm_desktop.ml.vlm.tokenizer import save_tokenizer, stage_token_ids

    cfg = model.config
    if stage_token_ids(tokenizer, cfg.stages) != cfg.lm.stage_token_ids:
        raise ValueError("The 'tokenizer' parameter does not match the model (its stage token "
                         "ids differ from the config's): save the tokenizer the model was "
                         "built with.")
    state = merged_state_dict(model)
    tied = tied_keys(state)
    # contiguous(): save_file refuses views; cpu(): the file must load on any machine.
    state = {k: v.detach().cpu().contiguous() for k, v in state.items() if k not in tied}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(cfg.to_json(), encoding="utf-8")
    save_tokenizer(tokenizer, folder / TOKENIZER_DIR)
    # Every file of tokenizer/ (not only those save_pretrained reports), so nothing in the
    # folder that loading reads escapes the checksums.
    tok_files = [p for p in (folder / TOKENIZER_DIR).rglob("*") if p.is_file()]
    files = [folder / WEIGHTS_FILE, folder / CONFIG_FILE] + tok_files
    # The saved model's size: LoRA adapters are merged into the weights they adapt.
    n_parameters = sum(p.numel() for n, p in model.named_parameters() if ".lora_" not in n)
    manifest = {
        "format": MANIFEST_FORMAT,
        "files": {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(files)},
        "renderer_version": cfg.renderer_version,
        "channels": list(cfg.channels),
        "stages": list(cfg.stages),
        "n_parameters": n_parameters,
        "card": card,
    }
    if sequence is not None:
        manifest["sequence"] = sequence.to_dict()
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def read_sequence(manifest: dict[str, Any], folder: str | Path = "") -> StageSequenceModel | None:
    """The manifest's night-context model, None when it has none (models before it existed).

    Torch-free in effect (only numpy); raises :class:`ModelFolderError` when it is malformed.
    """
    try:
        return StageSequenceModel.from_manifest(manifest)
    except (ValueError, TypeError) as err:
        raise ModelFolderError(f"The night-context model in {MANIFEST_FILE} of model folder "
                               f"'{folder}' is invalid: {err} Re-export the model.") from err


def write_sequence(folder: str | Path, sequence: StageSequenceModel) -> Path:
    """Add (or replace) the night-context model of an existing folder, atomically.

    Only ``MANIFEST.json`` changes; the weights and their checksums are untouched.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    manifest["sequence"] = sequence.to_dict()
    path = folder / MANIFEST_FILE
    atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False))
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read ``MANIFEST.json`` of ``folder`` (no hashing); raises :class:`ModelFolderError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"Model folder '{folder}' does not exist or is not a folder. "
                               "Choose a folder written by save_model (it holds MANIFEST.json).")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ModelFolderError(f"Model folder '{folder}' has no {MANIFEST_FILE}. It is not a "
                               "complete model folder: copy it again or re-export the model.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' table")
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{MANIFEST_FILE} in model folder '{folder}' cannot be read "
                               f"({err}). Copy the folder again or re-export the model.") from err
    return manifest


def check_folder(folder: str | Path, expected_renderer_version: str | None = None
                 ) -> tuple[VLMConfig, dict[str, Any]]:
    """Verify a model folder (checksums, manifest, config, renderer) without building the model.

    Parameters
    ----------
    folder : str or Path
        A folder written by :func:`save_model`.
    expected_renderer_version : str, optional
        The running renderer's version; a model trained on another renderer is refused.

    Returns
    -------
    config, manifest
        The folder's bound config and its manifest.

    Raises
    ------
    ModelFolderError
        Missing folder or file, wrong checksum, unreadable config or renderer mismatch.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ModelFolderError(f"Model folder '{folder}' is missing '{name}'. Copy the "
                                   "folder again or re-export the model.")
        if _sha256(path) != digest:
            raise ModelFolderError(
                f"'{name}' in model folder '{folder}' is corrupted or was modified (its sha256 "
                "does not match MANIFEST.json). Copy the folder again or re-export the model.")
    read_sequence(manifest, folder)  # a malformed one is refused here, not mid-night
    for required in (WEIGHTS_FILE, CONFIG_FILE):
        if required not in manifest["files"]:
            raise ModelFolderError(f"MANIFEST.json of model folder '{folder}' does not list "
                                   f"'{required}'. Re-export the model.")
    try:
        cfg = VLMConfig.from_json((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (ValueError, TypeError) as err:
        raise ModelFolderError(f"{CONFIG_FILE} in model folder '{folder}' is not a valid model "
                               f"config: {err}. Re-export the model with this version of the "
                               "app.") from err
    if expected_renderer_version is not None and \
            cfg.renderer_version != expected_renderer_version:
        raise ModelFolderError(
            f"The model in '{folder}' was trained on images of renderer version "
            f"{cfg.renderer_version!r}, but this app renders version "
            f"{expected_renderer_version!r}. Use a model trained for this renderer, or "
            "fine-tune this one on newly rendered images.")
    return cfg, manifest


def load_model(folder: str | Path, device: str | torch.device = "cpu",
               expected_renderer_version: str | None = None) -> tuple[EEGVLM, Any, dict]:
    """Load and verify a model folder.

    Parameters
    ----------
    folder : str or Path
        A folder written by :func:`save_model`.
    device : str or torch.device
        Where to put the model.
    expected_renderer_version : str, optional
        The running renderer's version; a model trained on another renderer is refused.

    Returns
    -------
    model, tokenizer, manifest
        The model is in eval mode.

    Raises
    ------
    ModelFolderError
        Missing folder or file, wrong checksum, unreadable config, renderer mismatch, or
        tensors that do not fit the config.
    """
    from eegvlm_desktop.ml.vlm.model import EEGVLM
    from eegvlm_desktop.ml.vlm.tokenizer import load_tokenizer, stage_token_ids

    folder = Path(folder)
    cfg, manifest = check_folder(folder, expected_renderer_version)
    try:
        tokenizer = load_tokenizer(folder / TOKENIZER_DIR)
        # A pretrained LM's embeddings may have more rows than its tokenizer has tokens
        # (Qwen2 pads them to a multiple of 64 or more).
        n_tok = len(tokenizer)
        ok = ((n_tok <= cfg.lm.vocab_size if cfg.lm.pretrained else n_tok == cfg.lm.vocab_size)
              and stage_token_ids(tokenizer, cfg.stages) == cfg.lm.stage_token_ids)
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"The tokenizer in model folder '{folder}' cannot be loaded "
                               f"({err}). Re-export the model.") from err
    if not ok:
        raise ModelFolderError(f"The tokenizer in model folder '{folder}' does not match its "
                               "config (vocabulary size or stage tokens differ). Re-export "
                               "the model.")
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ModelFolderError(f"{WEIGHTS_FILE} in model folder '{folder}' cannot be read "
                               f"({err}). Copy the folder again or re-export.") from err
    try:
        model = EEGVLM(cfg)
    except ValueError as err:  # includes PretrainedError (e.g. an arch this open_clip lacks)
        raise ModelFolderError(f"The model in folder '{folder}' cannot be rebuilt from its "
                               f"{CONFIG_FILE}: {err}") from err
    try:
        # Tied weights were stored once (see tied_keys); any other gap is an error.
        result = model.load_state_dict(state, strict=False)
        missing = set(result.missing_keys) - tied_keys(model.state_dict())
        if missing or result.unexpected_keys:
            raise RuntimeError(f"missing keys {sorted(missing)[:10]}, unexpected keys "
                               f"{sorted(result.unexpected_keys)[:10]}")
    except RuntimeError as err:  # missing/unexpected keys and shape mismatches
        raise ModelFolderError(
            f"The weights in model folder '{folder}' do not fit its config.json (keys or "
            f"shapes differ): {str(err)[:500]}. Re-export the model; do not mix files of "
            "different models.") from err
    return model.to(device).eval(), tokenizer, manifest
