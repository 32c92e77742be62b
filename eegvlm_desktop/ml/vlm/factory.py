"""Create a new, untrained EEG-VLM and its tokenizer: the one entry point for training.

By default everything is small and built here: a custom ViT, the enhancement CNN and an LM
from the preset, with a BPE tokenizer trained on the corpus. Options swap in, from local files
only, an open_clip ViT architecture (optionally initialised from a checkpoint) and a pretrained
transformers LM with its tokenizer (optionally trained through LoRA adapters).
"""
from __future__ import annotations

from typing import Any

from eegvlm_desktop.core.errors import check_option
from eegvlm_desktop.ml.vlm.config import CUSTOM_ARCH, FUSIONS, VisionConfig, VLMConfig
from eegvlm_desktop.ml.vlm.model import EEGVLM
from eegvlm_desktop.ml.vlm.pretrained import (PretrainedError, apply_lora, build_vision_tower,
                                              checkpoint_file, fill_lm_config, load_pretrained_lm,
                                              vit_geometry)
from eegvlm_desktop.ml.vlm.tokenizer import train_tokenizer


def new_model(preset: str, fusion: str, texts: list[str], *, vision_arch: str | None = None,
              vision_checkpoint: str | None = None, lm_pretrained: str | None = None,
              lora: dict | None = None) -> tuple[EEGVLM, Any]:
    """Build a new model for training, with the tokenizer it must be saved with.

    Parameters
    ----------
    preset : str
        ``'tiny'``, ``'default'`` or ``'fast'`` (:meth:`VLMConfig.preset`): the sizes of
        whatever is built from the config.
    fusion : str
        ``'both'``, ``'clip'`` or ``'enhance'``.
    texts : list of str
        The corpus (prompt and reasoning targets) the tokenizer is trained on; unused with
        ``lm_pretrained``, whose own tokenizer is used.
    vision_arch : str, optional
        An open_clip model name (``pretrained.vit_archs()``; ``'/'`` is read as ``'-'``);
        ``None`` or ``'custom'``: the preset's ViT. The config's ViT geometry is copied from
        the architecture.
    vision_checkpoint : str, optional
        Local open_clip checkpoint of ``vision_arch`` to initialise the ViT from
        (.safetensors preferred; .pt/.pth/.bin are read with ``weights_only=True``).
    lm_pretrained : str, optional
        Local transformers causal-LM folder (weights, config and tokenizer).
    lora : dict, optional
        peft ``LoraConfig`` arguments (``r``, ``lora_alpha``, ``lora_dropout``,
        ``target_modules`` ...); needs ``lm_pretrained``. The base LM is then frozen and
        only the adapters, the projectors and the vision / enhancement towers train.

    Returns
    -------
    model, tokenizer
        The model is in training mode on the CPU.

    Raises
    ------
    ValueError
        A bad option; :class:`~eegvlm_desktop.ml.vlm.pretrained.PretrainedError` (also an
        ``EEGVLMError``) when an architecture, checkpoint or LM folder cannot be used.
    """
    cfg = VLMConfig.preset(preset)
    check_option("fusion", fusion, FUSIONS)
    cfg.fusion = fusion
    # 'ViT-B/16' -> 'ViT-B-16': the paper's spelling, normalised as open_clip itself does.
    arch = (vision_arch or CUSTOM_ARCH).replace("/", "-")
    if vision_checkpoint and arch == CUSTOM_ARCH:
        raise PretrainedError("The 'vision_checkpoint' parameter needs 'vision_arch' to name the "
                              "open_clip architecture it was saved from, but got "
                              f"vision_arch={vision_arch!r}.")
    if vision_checkpoint and fusion == "enhance":
        raise PretrainedError("The 'vision_checkpoint' parameter has no use with "
                              "fusion='enhance', which builds no ViT; allowed fusions with a "
                              "checkpoint: 'both', 'clip'.")
    if lora and not lm_pretrained:
        raise PretrainedError("The 'lora' parameter needs 'lm_pretrained': LoRA adapts a "
                              "pretrained LM, while an LM built from the preset trains fully.")
    if arch != CUSTOM_ARCH:
        cfg.vision = VisionConfig(arch=arch, **vit_geometry(arch))
        # Stored as provenance only (absolute, so it still says which file on this machine).
        if vision_checkpoint:
            cfg.vision.checkpoint = str(checkpoint_file(arch, vision_checkpoint))
    if lm_pretrained:
        cfg.lm.pretrained, cfg.lm.lora = lm_pretrained, dict(lora or {})
    cfg.validate()  # cheap: bad options fail before a large checkpoint or LM is read

    lm = None
    if lm_pretrained:
        lm, tok = load_pretrained_lm(lm_pretrained, cfg.stages)
        fill_lm_config(cfg.lm, lm, lm_pretrained)
    else:
        tok = train_tokenizer(texts, stages=cfg.stages)
    cfg.bind_tokenizer(tok)
    if lm is not None:
        # The embedding matrix may be larger than the tokenizer (padded vocabularies).
        cfg.lm.vocab_size = lm.get_input_embeddings().num_embeddings
    visual = None
    if arch != CUSTOM_ARCH and fusion != "enhance":
        visual = build_vision_tower(cfg.vision, cfg.vision.checkpoint or None)
    model = EEGVLM(cfg, visual=visual, lm=lm)
    if cfg.lm.lora:
        apply_lora(model.lm, cfg.lm.lora)
    return model, tok
