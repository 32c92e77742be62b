"""Configuration of the EEG vision-language model (no torch import: cheap to read anywhere).

A :class:`VLMConfig` fully describes the architecture, so a model folder holds only this JSON,
the tokenizer and the tensors; nothing is ever downloaded. Token ids that depend on the tokenizer
(vocabulary size, special tokens, the stage tokens and the direct prompt) are stored here too, by
:meth:`VLMConfig.bind_tokenizer`, so the model can be built without the tokenizer at hand and a
mismatched tokenizer is caught on load.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from eegvlm_desktop.core.errors import check_option
from eegvlm_desktop.core.stages import STAGES

#: Bumped when the meaning of a field changes; older files are refused rather than misread.
CONFIG_FORMAT_VERSION = 1
FUSIONS: tuple[str, ...] = ("both", "clip", "enhance")
ENHANCE_ARCHS: tuple[str, ...] = ("resnet18",)
ENHANCE_LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
LM_ARCHS: tuple[str, ...] = ("qwen2", "llama")
#: ``vision.arch`` of the ViT built from the config's own fields.
CUSTOM_ARCH = "custom"
#: peft ``LoraConfig`` arguments accepted in ``lm.lora``. Options that change how adapters
#: merge (DoRA, LoRA biases, extra saved modules, trainable token rows) are left out, because
#: a model folder holds the adapters merged into the base weights (see pretrained.py).
LORA_KEYS: tuple[str, ...] = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias",
                              "use_rslora", "layers_to_transform", "rank_pattern",
                              "alpha_pattern", "init_lora_weights", "fan_in_fan_out")
PRESETS: tuple[str, ...] = ("tiny", "default", "fast")
#: The renderer version this code was written against; the renderer owns the real constant.
DEFAULT_RENDERER_VERSION = "2"
DEFAULT_CHANNELS: tuple[str, ...] = ("EEG", "EOG", "EMG")
DEFAULT_DIRECT_PROMPT = "Which sleep stage is this EEG epoch? Stage:"


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"The '{name}' parameter must be a positive integer, but got {value!r}.")


@dataclass
class VisionConfig:
    """The open_clip ViT that gives the low-level patch features.

    Parameters
    ----------
    image_size : int
        Side of the square input image in pixels (the renderer's output size).
    patch_size : int
        Side of a ViT patch; ``image_size // patch_size`` is the attention-map grid.
    width, layers, heads : int
        Transformer width, depth and attention heads (``width % heads == 0``).
    mlp_ratio : float
        Hidden size of each block's MLP relative to ``width``.
    arch : str
        ``'custom'``: the ViT is built from the fields above (the default, trained here).
        Otherwise an open_clip model name (``open_clip.list_models()``, e.g. ``'ViT-B-16'``)
        whose vision tower is a ViT for 224-px images; the geometry fields above are then
        filled from that tower by :func:`eegvlm_desktop.ml.vlm.factory.new_model`.
    checkpoint : str
        Local open_clip checkpoint the named tower was initialised from (provenance only):
        it is read when a new model is built for training, never when a saved model folder
        is loaded, since the folder's ``model.safetensors`` holds the trained weights.
    """

    image_size: int = 224
    patch_size: int = 32
    width: int = 64
    layers: int = 2
    heads: int = 2
    mlp_ratio: float = 4.0
    # Appended after the original fields so configs written before them still load.
    arch: str = CUSTOM_ARCH
    checkpoint: str = ""

    def validate(self) -> None:
        for name in ("image_size", "patch_size", "width", "layers", "heads"):
            _positive(f"vision.{name}", getattr(self, name))
        if self.image_size % self.patch_size:
            raise ValueError(
                f"The 'vision.image_size' parameter ({self.image_size}) must be a multiple of "
                f"'vision.patch_size' ({self.patch_size})."
            )
        if self.width % self.heads:
            raise ValueError(
                f"The 'vision.width' parameter ({self.width}) must be divisible by "
                f"'vision.heads' ({self.heads})."
            )
        # Whether a named arch exists is checked where open_clip is imported (pretrained.py):
        # this module stays torch-free.
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError(f"The 'vision.arch' parameter must be {CUSTOM_ARCH!r} or an "
                             f"open_clip model name, but got {self.arch!r}.")
        if self.checkpoint and self.arch == CUSTOM_ARCH:
            raise ValueError(
                f"The 'vision.checkpoint' parameter ({self.checkpoint!r}) needs 'vision.arch' "
                f"to name the open_clip architecture it was saved from, but 'vision.arch' is "
                f"{CUSTOM_ARCH!r}.")

    @property
    def grid(self) -> int:
        """Patches per side (14 for 224 px and patch 16)."""
        return self.image_size // self.patch_size


@dataclass
class EnhanceConfig:
    """The visual-enhancement CNN whose intermediate maps become high-level tokens.

    Parameters
    ----------
    arch : str
        Only ``'resnet18'``: torchvision's ResNet-18 layout (BasicBlock, [2, 2, 2, 2]).
    width : int
        Channels of the stem and ``layer1``; 64 is torchvision's resnet18, smaller values
        shrink every stage by the same factor (layerN has ``width * 2**(N-1)`` channels).
    layers : list of str
        Which stages give high-level tokens, from ``'layer1'`` .. ``'layer4'``.
    pool : int
        Each chosen map is average-pooled to ``pool x pool`` tokens.
    """

    arch: str = "resnet18"
    width: int = 8
    layers: list[str] = field(default_factory=lambda: ["layer3", "layer4"])
    pool: int = 1

    def validate(self) -> None:
        check_option("enhance.arch", self.arch, ENHANCE_ARCHS)
        _positive("enhance.width", self.width)
        _positive("enhance.pool", self.pool)
        if not self.layers:
            raise ValueError("The 'enhance.layers' parameter must name at least one layer.")
        for layer in self.layers:
            check_option("enhance.layers", layer, ENHANCE_LAYERS)

    def channels(self, layer: str) -> int:
        """Number of channels of ``layer`` (BasicBlock expansion is 1)."""
        return self.width * 2 ** (int(layer[-1]) - 1)

    @property
    def n_tokens(self) -> int:
        return len(self.layers) * self.pool * self.pool


@dataclass
class LMConfig:
    """The causal language model and its tokenizer-bound ids.

    ``vocab_size``, the special ids and ``stage_token_ids`` are 0 / empty until
    :meth:`VLMConfig.bind_tokenizer` fills them from the tokenizer.

    Parameters
    ----------
    arch : str
        ``'qwen2'`` or ``'llama'`` for an LM built from the fields below; with ``pretrained``
        it is the transformers ``model_type`` of that LM (any causal LM).
    pretrained : str
        Local transformers model folder the LM (and its tokenizer) came from, or ``''`` for an
        LM built from this config with a tokenizer trained here. Provenance only once the model
        exists: a model folder rebuilds the LM from ``hf_config`` and its own weights.
    lora : dict
        peft ``LoraConfig`` arguments (``r``, ``lora_alpha``, ``lora_dropout``,
        ``target_modules`` ...; see :data:`LORA_KEYS`) used for training a pretrained LM;
        empty means full fine-tuning.
    hf_config : dict
        The pretrained LM's transformers config (``config.to_dict()``), filled when the model
        is built, so that a model folder is self-contained.
    """

    arch: str = "qwen2"
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 128
    max_positions: int = 512
    vocab_size: int = 0
    bos_id: int = -1
    eos_id: int = -1
    pad_id: int = -1
    stage_token_ids: list[int] = field(default_factory=list)
    # Appended after the original fields so configs written before them still load.
    pretrained: str = ""
    lora: dict[str, Any] = field(default_factory=dict)
    hf_config: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.pretrained:
            # The sizes were copied from the pretrained LM's own config, which is the
            # authority on its shape (e.g. heads * head_dim need not equal hidden_size).
            for name in ("hidden_size", "max_positions"):
                _positive(f"lm.{name}", getattr(self, name))
        else:
            check_option("lm.arch", self.arch, LM_ARCHS)
            for name in ("hidden_size", "layers", "heads", "kv_heads", "intermediate_size",
                         "max_positions"):
                _positive(f"lm.{name}", getattr(self, name))
            if self.hidden_size % self.heads or self.heads % self.kv_heads:
                raise ValueError(
                    f"'lm.hidden_size' ({self.hidden_size}) must be divisible by 'lm.heads' "
                    f"({self.heads}), and 'lm.heads' by 'lm.kv_heads' ({self.kv_heads})."
                )
        self._validate_lora()

    def _validate_lora(self) -> None:
        if not isinstance(self.lora, dict):
            raise ValueError(f"The 'lm.lora' parameter must be a dict of peft LoraConfig "
                             f"arguments (empty = full fine-tuning), but got {self.lora!r}.")
        if not self.lora:
            return
        if not self.pretrained:
            raise ValueError("The 'lm.lora' parameter needs 'lm.pretrained': LoRA adapts a "
                             "pretrained LM, while an LM built from the config trains fully.")
        bad = sorted(set(self.lora) - set(LORA_KEYS))
        if bad:
            raise ValueError(f"Unknown 'lm.lora' keys {bad}; allowed keys are "
                             f"{list(LORA_KEYS)}.")
        _positive("lm.lora.r", self.lora.get("r", 8))


@dataclass
class VLMConfig:
    """Everything needed to rebuild an :class:`~eegvlm_desktop.ml.vlm.model.EEGVLM`.

    Parameters
    ----------
    vision, enhance, lm : sub-configs
        See :class:`VisionConfig`, :class:`EnhanceConfig`, :class:`LMConfig`.
    clip_feature_layer : int
        ViT block whose output gives the low-level patch tokens; negative counts from the end
        (-2 = second-to-last, as LLaVA does). Later blocks are never built.
    fusion : str
        Image tokens given to the LM: ``'both'`` (high-level + patch tokens, with alignment),
        ``'clip'`` (patch tokens only) or ``'enhance'`` (high-level tokens only) — the ablations.
    align_weight, direct_weight : float
        Weights of the alignment loss and of the direct-answer loss next to the LM loss.
    align_temperature : float
        Temperature of the InfoNCE alignment loss.
    direct_prompt : str
        The short prompt after which the next token is read as the stage (fast path).
    direct_prompt_ids : list of int
        ``direct_prompt`` tokenised (with BOS), filled by :meth:`bind_tokenizer`.
    renderer_version : str
        Version of the image renderer the model was trained on; checked when loading.
    channels : list of str
        Channel roles the renderer must draw, in order.
    stages : list of str
        Stage names, in the column order of ``stage_probs``.
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    clip_feature_layer: int = -2
    fusion: str = "both"
    projector_hidden: int = 0
    align_weight: float = 0.1
    align_temperature: float = 0.1
    direct_weight: float = 1.0
    direct_prompt: str = DEFAULT_DIRECT_PROMPT
    direct_prompt_ids: list[int] = field(default_factory=list)
    renderer_version: str = DEFAULT_RENDERER_VERSION
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    format_version: int = CONFIG_FORMAT_VERSION

    # ----------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str) -> VLMConfig:
        """Return the ``'tiny'`` (tests), ``'default'`` or ``'fast'`` config.

        ``'fast'`` uses 32-pixel patches (a 7 x 7 grid) and narrower networks: measured on
        2 CPU cores it gives stage probabilities at ~130 epochs/s against ~17 for
        ``'default'`` (16-pixel patches, 14 x 14 grid), which is what a whole-night pass
        on a scorer's laptop needs.
        """
        check_option("name", name, PRESETS)
        if name == "tiny":
            return cls()
        if name == "fast":
            return cls(
                vision=VisionConfig(patch_size=32, width=192, layers=4, heads=4),
                enhance=EnhanceConfig(width=16, layers=["layer3", "layer4"], pool=2),
                lm=LMConfig(hidden_size=192, layers=3, heads=4, kv_heads=2,
                            intermediate_size=512, max_positions=1024),
            )
        # ~13 M parameters: < 60 MB as float32, ~0.3 s per training example on 2 CPU cores.
        return cls(
            vision=VisionConfig(patch_size=16, width=256, layers=6, heads=4),
            enhance=EnhanceConfig(width=32, layers=["layer3", "layer4"], pool=2),
            lm=LMConfig(hidden_size=256, layers=4, heads=4, kv_heads=2, intermediate_size=768,
                        max_positions=1024),
        )

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid parameter."""
        if self.format_version != CONFIG_FORMAT_VERSION:
            raise ValueError(
                f"The 'format_version' parameter must be {CONFIG_FORMAT_VERSION}, "
                f"but got {self.format_version!r}."
            )
        self.vision.validate()
        self.enhance.validate()
        self.lm.validate()
        check_option("fusion", self.fusion, FUSIONS)
        n = self.vision.layers
        if not isinstance(self.clip_feature_layer, int) or not -n <= self.clip_feature_layer < n:
            raise ValueError(
                f"The 'clip_feature_layer' parameter must be an integer in [{-n}, {n - 1}] "
                f"(vision.layers={n}), but got {self.clip_feature_layer!r}."
            )
        if self.projector_hidden < 0:
            raise ValueError(f"The 'projector_hidden' parameter must be >= 0 (0 = LM width), "
                             f"but got {self.projector_hidden!r}.")
        if self.align_temperature <= 0:
            raise ValueError(f"The 'align_temperature' parameter must be > 0, "
                             f"but got {self.align_temperature!r}.")
        if not self.stages or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"The 'stages' parameter must be distinct names, got {self.stages!r}.")

    @property
    def feature_layer_index(self) -> int:
        """``clip_feature_layer`` as a non-negative block index."""
        return self.clip_feature_layer % self.vision.layers

    @property
    def is_bound(self) -> bool:
        """True once :meth:`bind_tokenizer` filled the tokenizer-dependent ids."""
        return (self.lm.vocab_size > 0 and len(self.lm.stage_token_ids) == len(self.stages)
                and bool(self.direct_prompt_ids))

    def bind_tokenizer(self, tokenizer: Any) -> VLMConfig:
        """Store the tokenizer's vocabulary size, special ids, stage ids and direct prompt ids.

        Parameters
        ----------
        tokenizer : transformers.PreTrainedTokenizerFast
            A tokenizer from :func:`eegvlm_desktop.ml.vlm.tokenizer.train_tokenizer`.

        Returns
        -------
        VLMConfig
            ``self``, for chaining.
        """
        # Imported here so that reading a config never imports transformers.
        from eegvlm_desktop.ml.vlm.tokenizer import encode_prompt, stage_token_ids

        self.lm.vocab_size = len(tokenizer)
        self.lm.bos_id = int(tokenizer.bos_token_id)
        self.lm.eos_id = int(tokenizer.eos_token_id)
        self.lm.pad_id = int(tokenizer.pad_token_id)
        self.lm.stage_token_ids = stage_token_ids(tokenizer, self.stages)
        self.direct_prompt_ids = encode_prompt(tokenizer, self.direct_prompt)
        return self

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError`` (no silent drop)."""
        subs = {"vision": VisionConfig, "enhance": EnhanceConfig, "lm": LMConfig}
        kwargs: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown config keys {sorted(unknown)}; allowed keys are "
                             f"{sorted(known)}.")
        for key, value in data.items():
            if key in subs:
                sub_known = {f.name for f in fields(subs[key])}
                bad = set(value) - sub_known
                if bad:
                    raise ValueError(f"Unknown '{key}' config keys {sorted(bad)}; allowed keys "
                                     f"are {sorted(sub_known)}.")
                value = subs[key](**value)
            kwargs[key] = value
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, text: str) -> VLMConfig:
        return cls.from_dict(json.loads(text))
