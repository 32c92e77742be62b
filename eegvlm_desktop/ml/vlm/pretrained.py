"""Build the towers: the ViT (custom or any open_clip ViT) and the LM (from a config or a folder).

Everything here works offline: open_clip architectures come from open_clip's own config files,
checkpoints and LM folders are local paths, and nothing is ever downloaded.

* Vision: ``vision.arch == 'custom'`` builds a small ``VisionTransformer`` from the config's
  fields; any other value names an open_clip model whose ``.visual`` is kept (a ViT for the
  renderer's 224-px images), optionally initialised from a local open_clip checkpoint.
* LM: built from ``LMConfig`` (Qwen2 / Llama), or loaded from a local transformers folder with
  its tokenizer; its transformers config is copied into ``LMConfig.hf_config`` so a saved model
  folder rebuilds it without that folder. LoRA adapters (peft) are injected in place and merged
  into the base weights when the model is saved (:func:`merged_state_dict`).
"""
from __future__ import annotations

import json
import logging
import pickle
import tempfile
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.model import CLIPVisionCfg
from open_clip.transformer import VisionTransformer
from safetensors import SafetensorError
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig,
                          LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.picture.rendering import IMAGE_SIZE
from eegvlm_desktop.ml.vlm.config import CUSTOM_ARCH, LMConfig, VisionConfig
from eegvlm_desktop.ml.vlm.tokenizer import (load_tokenizer, prepare_pretrained_tokenizer,
                                             save_tokenizer)

#: Checkpoint files accepted for ``vision.checkpoint``; .safetensors is preferred, the others
#: go through open_clip's loader with ``weights_only=True`` (tensors only, no pickled code;
#: its fallback without the argument gets torch's own default, also weights-only).
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".bin")
# Without a checkpoint only ``.visual`` is kept, so the text tower is replaced by a stub: a
# ViT-L/14's real one is 123 M parameters built for nothing. (With a checkpoint the whole CLIP
# is needed: open_clip loads it strictly.)
_STUB_TEXT_CFG = {"context_length": 2, "vocab_size": 2, "width": 8, "heads": 1, "layers": 1}


class _DropRandomInitWarning(logging.Filter):
    """Hide open_clip's 'No pretrained weights loaded ... initialized randomly' log line.

    Random weights are intended there (a new tower trained here, or one whose saved weights
    ``load_model`` loads next), and the line would mislead whoever reads the app's log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


class PretrainedError(EEGVLMError, ValueError):
    """A vision architecture, vision checkpoint or pretrained LM folder cannot be used.

    Also a ``ValueError``, like the config checks, so callers catching bad parameters catch it.
    """


# ----------------------------------------------------------------- vision
def _arch_problem(arch: str) -> str | None:
    """Why open_clip model ``arch`` cannot give our ViT, or None if it can."""
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        return "open_clip has no architecture of that name"
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if vision.get("timm_model_name"):
        return (f"its vision tower is the timm model {vision['timm_model_name']!r}, not an "
                "open_clip VisionTransformer")
    if not isinstance(vision.get("layers"), int):
        return "its vision tower is a ModifiedResNet, not an open_clip VisionTransformer"
    if text.get("hf_model_name"):
        # Loading a checkpoint needs the whole CLIP, whose Hugging Face text tower would be
        # downloaded; this app never downloads.
        return (f"its text tower is the Hugging Face model {text['hf_model_name']!r}, which "
                "open_clip would download")
    size = vision.get("image_size", IMAGE_SIZE)
    if size not in (IMAGE_SIZE, [IMAGE_SIZE, IMAGE_SIZE]):
        return (f"it takes {size}-px images, but the renderer draws {IMAGE_SIZE} x "
                f"{IMAGE_SIZE}-px images")
    return None


def _brief(err: BaseException) -> str:
    """A library error on one line, cut to a length a dialog can show."""
    return " ".join(str(err).split())[:400]


def vit_archs() -> list[str]:
    """The open_clip model names usable as ``vision.arch`` (besides ``'custom'``)."""
    return [name for name in open_clip.list_models() if _arch_problem(name) is None]


def check_arch(arch: str) -> None:
    """Raise :class:`PretrainedError` unless ``arch`` is ``'custom'`` or a usable open_clip ViT."""
    if arch == CUSTOM_ARCH:
        return
    problem = _arch_problem(arch)
    if problem is not None:
        allowed = ", ".join(repr(a) for a in [CUSTOM_ARCH] + vit_archs())
        raise PretrainedError(
            f"Invalid value for the 'vision.arch' parameter: {problem}. Allowed values are "
            f"{allowed} (open_clip ViTs for {IMAGE_SIZE}-px images), but got {arch!r} instead.")


def vit_geometry(arch: str) -> dict[str, Any]:
    """``VisionConfig`` geometry fields of open_clip ViT ``arch`` (read from its config).

    Returns
    -------
    dict
        ``image_size``, ``patch_size``, ``width``, ``layers``, ``heads``, ``mlp_ratio``.
    """
    if arch == CUSTOM_ARCH:
        raise ValueError(f"{CUSTOM_ARCH!r} has no fixed geometry: the config's fields give it.")
    check_arch(arch)
    v = CLIPVisionCfg(**open_clip.get_model_config(arch)["vision_cfg"])
    size = v.image_size if isinstance(v.image_size, int) else v.image_size[0]
    return dict(image_size=size, patch_size=v.patch_size, width=v.width, layers=v.layers,
                heads=v.width // v.head_width, mlp_ratio=float(v.mlp_ratio))


def checkpoint_file(arch: str, checkpoint: str) -> Path:
    """The absolute path of an existing checkpoint file of an accepted kind.

    Raises
    ------
    PretrainedError
        If the file is missing or of another kind.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise PretrainedError(
            f"The 'vision.checkpoint' file '{checkpoint}' does not exist. Give the path of a "
            f"local open_clip checkpoint of architecture {arch!r} "
            f"({', '.join(CHECKPOINT_SUFFIXES)}; .safetensors preferred).")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise PretrainedError(
            f"Invalid 'vision.checkpoint' file '{checkpoint}': allowed kinds are "
            f"{', '.join(CHECKPOINT_SUFFIXES)}, but got {path.suffix or 'no suffix'!r}.")
    # Absolute: open_clip treats a bare string such as 'openai' as a download tag.
    return path.resolve()


def build_vision_tower(v: VisionConfig, checkpoint: str | None = None) -> VisionTransformer:
    """Build the full (unpruned) ViT described by ``v``.

    Parameters
    ----------
    v : VisionConfig
        For a named ``arch`` the geometry fields must already match it (:func:`vit_geometry`).
    checkpoint : str, optional
        Local open_clip checkpoint of ``v.arch`` (a whole CLIP state dict, as open_clip saves
        it) to initialise the tower from; only when a new model is built. ``v.checkpoint`` is
        never read here: a saved model folder loads its own weights afterwards.

    Raises
    ------
    PretrainedError
        Unknown or unusable arch, missing checkpoint, or a checkpoint that does not fit.
    """
    if v.arch == CUSTOM_ARCH:
        if checkpoint:
            raise PretrainedError("The 'vision.checkpoint' parameter needs 'vision.arch' to "
                                  f"name an open_clip architecture, but it is {CUSTOM_ARCH!r}.")
        return VisionTransformer(image_size=v.image_size, patch_size=v.patch_size, width=v.width,
                                 layers=v.layers, heads=v.heads, mlp_ratio=v.mlp_ratio,
                                 output_dim=v.width)
    check_arch(v.arch)
    common = dict(pretrained_image=False, pretrained_text=False, weights_only=True,
                  device="cpu")
    if checkpoint:
        path = checkpoint_file(v.arch, checkpoint)
        try:
            # strict=True inside open_clip: every key and shape must fit the architecture.
            clip = open_clip.create_model(v.arch, pretrained=str(path), **common)
        except (RuntimeError, ValueError, KeyError, OSError, StopIteration, SafetensorError,
                pickle.UnpicklingError) as err:
            raise PretrainedError(
                f"The 'vision.checkpoint' file '{checkpoint}' does not fit open_clip "
                f"architecture {v.arch!r} (keys or shapes differ, or it is not an open_clip "
                f"checkpoint): {_brief(err)}. Give the checkpoint saved for that "
                "architecture, or set 'vision.arch' to the one it was saved from.") from err
    else:
        quiet = _DropRandomInitWarning()
        root = logging.getLogger()  # open_clip logs through the root logger
        root.addFilter(quiet)
        try:
            clip = open_clip.create_model(v.arch, text_cfg=dict(_STUB_TEXT_CFG), **common)
        finally:
            root.removeFilter(quiet)
    visual = clip.visual
    if not isinstance(visual, VisionTransformer):
        raise PretrainedError(f"The 'vision.arch' parameter {v.arch!r} gave a "
                              f"{type(visual).__name__} vision tower; allowed kind: open_clip "
                              "VisionTransformer.")
    check_vision_tower(visual, v)
    return visual


def check_vision_tower(visual: VisionTransformer, v: VisionConfig) -> None:
    """Raise ``ValueError`` if the tower's geometry is not the config's (grid, feature layer)."""
    got = dict(image_size=visual.image_size[0], patch_size=visual.patch_size[0],
               width=visual.transformer.width, layers=len(visual.transformer.resblocks))
    want = {name: getattr(v, name) for name in got}
    if got != want or visual.image_size[0] != visual.image_size[1]:
        raise ValueError(f"The vision tower {v.arch!r} has geometry {got}, but the config says "
                         f"{want}; build new models with factory.new_model, which copies it.")


# ----------------------------------------------------------------- language model
def build_lm(lm: LMConfig) -> nn.Module:
    """A randomly initialised LM of the config's shape (weights are loaded afterwards).

    With ``lm.pretrained`` the shape is ``lm.hf_config`` (the pretrained LM's own config),
    so the original folder is not needed.
    """
    # Eager attention: sdpa returns no attention weights, and attention maps are a feature.
    if lm.pretrained:
        if not lm.hf_config:
            raise ValueError("The 'lm.hf_config' parameter is empty although 'lm.pretrained' is "
                             "set; build new models with factory.new_model(lm_pretrained=...).")
        data = dict(lm.hf_config)
        hf_cfg = AutoConfig.for_model(data.pop("model_type", lm.arch), **data)
        return AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager",
                                                dtype=torch.float32)
    kwargs = dict(
        vocab_size=lm.vocab_size, hidden_size=lm.hidden_size,
        intermediate_size=lm.intermediate_size, num_hidden_layers=lm.layers,
        num_attention_heads=lm.heads, num_key_value_heads=lm.kv_heads,
        max_position_embeddings=lm.max_positions, bos_token_id=lm.bos_id,
        eos_token_id=lm.eos_id, pad_token_id=lm.pad_id,
        # Untied, as every model folder built from a preset so far was trained: their
        # state dicts hold both matrices.
        tie_word_embeddings=False,
    )
    if lm.arch == "qwen2":
        hf_cfg, cls = Qwen2Config(**kwargs), Qwen2ForCausalLM
    else:
        hf_cfg, cls = LlamaConfig(**kwargs), LlamaForCausalLM
    return cls._from_config(hf_cfg, attn_implementation="eager")


def check_lm(model: nn.Module, lm: LMConfig) -> None:
    """Raise ``ValueError`` if the LM's embeddings do not match ``vocab_size``/``hidden_size``."""
    emb = model.get_input_embeddings()
    if (emb.num_embeddings, emb.embedding_dim) != (lm.vocab_size, lm.hidden_size):
        raise ValueError(f"The LM has {emb.num_embeddings} x {emb.embedding_dim} embeddings, but "
                         f"the config says lm.vocab_size={lm.vocab_size}, "
                         f"lm.hidden_size={lm.hidden_size}.")


def load_pretrained_lm(folder: str | Path, stages: list[str]) -> tuple[nn.Module, Any]:
    """Load a local transformers causal LM and its tokenizer, adapted to the model's needs.

    The tokenizer gets single-token stage names and BOS/pad if missing
    (:func:`~eegvlm_desktop.ml.vlm.tokenizer.prepare_pretrained_tokenizer`); the embeddings
    grow if it outgrows them. The LM is float32 (it shares its input with the float32 towers;
    mixed precision comes from autocast).

    Returns
    -------
    lm, tokenizer
        The tokenizer is the one a model folder will hold (saved and reloaded), so training
        and every later load use the very same ids.

    Raises
    ------
    PretrainedError
        Missing folder, not a causal LM with a tokenizer, or stage names that cannot be made
        single tokens.
    """
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise PretrainedError(
            f"The 'lm_pretrained' folder '{folder}' does not exist or has no config.json. Give a "
            "local transformers model folder (config.json, weights and tokenizer files, as "
            "written by save_pretrained).")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        prepare_pretrained_tokenizer(tok, stages)  # before the (maybe large) LM is read
        lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True,
                                                  attn_implementation="eager",
                                                  dtype=torch.float32)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PretrainedError(f"The 'lm_pretrained' folder '{folder}' cannot be used as a causal "
                              f"LM with its tokenizer: {_brief(err)}") from err
    with tempfile.TemporaryDirectory() as tmp:
        save_tokenizer(tok, tmp)
        tok = load_tokenizer(tmp)
    if len(tok) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tok))  # new rows: mean/covariance of the old ones
    return lm, tok


def fill_lm_config(lm_cfg: LMConfig, lm: nn.Module, folder: str | Path) -> None:
    """Copy a pretrained LM's shape and transformers config into ``lm_cfg``."""
    c = lm.config
    emb = lm.get_input_embeddings()
    lm_cfg.pretrained = str(Path(folder).expanduser().resolve())
    lm_cfg.arch = c.model_type
    lm_cfg.hidden_size = emb.embedding_dim
    lm_cfg.vocab_size = emb.num_embeddings
    lm_cfg.layers = int(c.num_hidden_layers)
    lm_cfg.heads = int(c.num_attention_heads)
    lm_cfg.kv_heads = int(getattr(c, "num_key_value_heads", None) or lm_cfg.heads)
    lm_cfg.intermediate_size = int(getattr(c, "intermediate_size", None) or 4 * emb.embedding_dim)
    lm_cfg.max_positions = int(getattr(c, "max_position_embeddings", None) or 1 << 20)
    data = json.loads(c.to_json_string(use_diff=False))
    data.pop("_name_or_path", None)  # a path on the training machine; 'pretrained' keeps it
    lm_cfg.hf_config = data


def apply_lora(lm: nn.Module, lora: dict[str, Any]) -> nn.Module:
    """Inject LoRA adapters into ``lm`` in place; only they stay trainable in it.

    peft's ``inject_adapter_in_model`` rather than ``get_peft_model``: the LM keeps its own
    class and ``forward`` signature (the generation code inspects it), and nothing outside the
    LM (towers, projectors) is frozen.
    """
    from peft import LoraConfig, inject_adapter_in_model  # only needed to train with LoRA

    try:
        return inject_adapter_in_model(LoraConfig(**lora), lm)
    except (TypeError, ValueError) as err:
        raise PretrainedError(f"The 'lora' parameter {lora!r} cannot be applied to this LM: "
                              f"{_brief(err)}") from err


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every LoRA adapter merged into its base weight.

    Merged rather than saved apart: a model folder then loads with plain transformers (no
    peft) into exactly the architecture ``LMConfig.hf_config`` describes, and inference pays
    nothing for the adapters. The delta is peft's own (``get_delta_weight``, what its
    ``merge`` adds), computed without modifying the model, which may keep training.
    """
    state = model.state_dict()
    if not any(".lora_" in k for k in state):
        return state
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        prefix = f"{name}."
        for key in [k for k in state if k.startswith(prefix)]:
            tensor = state.pop(key)
            rest = key[len(prefix):]
            if rest.startswith("base_layer."):
                rest = rest[len("base_layer."):]
                if rest == "weight" and not module.merged:
                    with torch.no_grad():
                        for adapter in module.active_adapters:
                            tensor = tensor + module.get_delta_weight(adapter)
                state[prefix + rest] = tensor
            # lora_A / lora_B / ... of this layer are dropped: they are in the weight now.
    return state
