"""The model's whole-night pass alone: stage probabilities from images, in plain torch.

:class:`~eegvlm_desktop.ml.vlm.model.EEGVLM` builds its towers from open_clip (the ViT) and
transformers (the Qwen2 LM), which is what training, reasoning and attention maps need.
Staging a night needs one forward per batch and nothing else, and importing those two
libraries (they pull in torchvision and ``torch._dynamo``) costs ~2.5 s and ~290 MB in a fresh
process on 2 cores, more than the staging of a night. :class:`StageOnlyVLM` is the same
forward written with torch's own modules, under the same parameter names, so it loads the
same ``model.safetensors``; ``tests/ml/test_stager.py`` checks that its probabilities equal
the full model's to float32 rounding (within 1e-5). They are not bitwise equal: once loaded,
the model is made inference-only (:func:`_ready`: BatchNorm folded into the convolutions,
channels-last convolutions, the last LM layer for the last position only), ~25 % faster.

Only the shapes the app trains are built here: a ``custom`` ViT (open_clip's default block)
and a ``qwen2`` LM without a pretrained config; :func:`supports` says whether a folder's
config is one of them (``eegvlm stage`` falls back to the full model otherwise).
"""
from __future__ import annotations

from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eegvlm_desktop.ml.vlm.config import CUSTOM_ARCH, VLMConfig
from eegvlm_desktop.ml.vlm.enhance import Projector, ResNet18Features
from eegvlm_desktop.ml.vlm.weights import tied_keys

#: open_clip's OPENAI_DATASET_MEAN / _STD (the full model normalises with them).
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
#: transformers' Qwen2Config defaults the app's LMs are built with (pretrained.build_lm).
ROPE_THETA = 10000.0
RMS_EPS = 1e-6


def supports(config: VLMConfig) -> bool:
    """True when ``config`` is a shape :class:`StageOnlyVLM` builds exactly."""
    return (config.vision.arch == CUSTOM_ARCH and config.lm.arch == "qwen2"
            and not config.lm.pretrained and not config.lm.lora and config.is_bound)


class _Block(nn.Module):
    """open_clip's default ``ResidualAttentionBlock`` (pre-norm, torch's MultiheadAttention)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, hidden))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        # The same tensor as query, key and value, without weights: torch's fused path, as
        # open_clip calls it.
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(_Block(width, heads, mlp_ratio) for _ in range(layers))


class _ViT(nn.Module):
    """open_clip's ``VisionTransformer`` up to the feature layer (the patch tokens only)."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        v = config.vision
        self.conv1 = nn.Conv2d(3, v.width, kernel_size=v.patch_size, stride=v.patch_size,
                               bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(v.width))
        self.positional_embedding = nn.Parameter(torch.zeros(v.grid ** 2 + 1, v.width))
        self.ln_pre = nn.LayerNorm(v.width)
        # Blocks after the feature layer are never used (the full model prunes them too).
        self.transformer = _Transformer(v.width, config.feature_layer_index + 1, v.heads,
                                        v.mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1)
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        for block in self.transformer.resblocks:
            x = block(x)
        return x[:, 1:]  # the class token is split off


class _RMSNorm(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS)
        return self.weight * x.to(dtype)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Causal self-attention; with ``last_only`` only the last position's output
        ``(n, 1, hidden)`` (keys and values still come from every position)."""
        n, length = x.shape[:2]
        shape = (n, length, -1, self.head_dim)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        if last_only:
            q = self.q_proj(x[:, -1:]).view(n, 1, -1, self.head_dim).transpose(1, 2)
            q = q * cos[..., -1:, :] + _rotate_half(q) * sin[..., -1:, :]
            mask, length_q = mask[..., -1:, :], 1
        else:
            q = self.q_proj(x).view(shape).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            length_q = length
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        k = k * cos + _rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        k = k[:, :, None].expand(n, self.kv_heads, rep, length, self.head_dim).reshape(
            n, self.heads, length, self.head_dim)
        v = v[:, :, None].expand(n, self.kv_heads, rep, length, self.head_dim).reshape(
            n, self.heads, length, self.head_dim)
        # transformers' eager attention, which the full model uses, step for step.
        w = torch.matmul(q, k.transpose(2, 3)) * self.head_dim ** -0.5 + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).contiguous()
        return self.o_proj(out.reshape(n, length_q, -1).contiguous())


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, intermediate: int) -> None:
        super().__init__()
        self.self_attn = _Attention(hidden, heads, kv_heads)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.mlp.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.mlp.down_proj = nn.Linear(intermediate, hidden, bias=False)
        self.input_layernorm = _RMSNorm(hidden)
        self.post_attention_layernorm = _RMSNorm(hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        attn = self.self_attn(self.input_layernorm(x), cos, sin, mask, last_only)
        x = (x[:, -1:] if last_only else x) + attn
        y = self.post_attention_layernorm(x)
        m = self.mlp
        return x + m.down_proj(F.silu(m.gate_proj(y)) * m.up_proj(y))


class _Qwen2(nn.Module):
    """transformers' ``Qwen2ForCausalLM`` forward (eager attention, no cache)."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        lm = config.lm
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(lm.vocab_size, lm.hidden_size, lm.pad_id)
        self.model.layers = nn.ModuleList(
            _Layer(lm.hidden_size, lm.heads, lm.kv_heads, lm.intermediate_size)
            for _ in range(lm.layers))
        self.model.norm = _RMSNorm(lm.hidden_size)
        self.lm_head = nn.Linear(lm.hidden_size, lm.vocab_size, bias=False)
        dim = lm.hidden_size // lm.heads
        self.register_buffer("inv_freq", 1.0 / (ROPE_THETA ** (
            torch.arange(0, dim, 2, dtype=torch.float) / dim)), persistent=False)

    def last_logits(self, embeds: torch.Tensor) -> torch.Tensor:
        """Logits of the last position ``(n, vocab)`` for a causal stream of embeddings."""
        length = embeds.shape[1]
        pos = torch.arange(length, device=embeds.device).unsqueeze(0)
        freqs = pos[..., None].float() * self.inv_freq.to(torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(embeds.dtype), emb.sin().to(embeds.dtype)
        low = torch.finfo(embeds.dtype).min
        mask = torch.full((length, length), low, dtype=embeds.dtype,
                          device=embeds.device).triu(1)
        mask = mask[None, None]
        x = embeds
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            # Only the last position's logits are read, and in the last layer nothing else
            # depends on the other positions' queries and MLP: a third of the LM's work.
            x = layer(x, cos, sin, mask, last_only=i == last)
        return self.lm_head(self.model.norm(x)[:, -1:, :])[:, -1, :]


class StageOnlyVLM(nn.Module):
    """The model's stage probabilities (its fast path), nothing else.

    Parameters
    ----------
    config : VLMConfig
        A bound config that :func:`supports` accepts.
    """

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        if not supports(config):
            raise ValueError(f"The 'config' parameter must describe a 'custom' ViT and a "
                             f"'qwen2' LM trained here (no pretrained LM, no LoRA), but got "
                             f"vision.arch={config.vision.arch!r}, lm.arch={config.lm.arch!r}, "
                             f"lm.pretrained={config.lm.pretrained!r}.")
        self.config = config
        hidden = config.lm.hidden_size
        ph = config.projector_hidden or hidden
        self.use_clip = config.fusion in ("both", "clip")
        self.use_enhance = config.fusion in ("both", "enhance")
        if self.use_clip:
            self.visual = _ViT(config)
            self.low_proj = Projector(config.vision.width, ph, hidden)
        if self.use_enhance:
            self.enhance = ResNet18Features(config.enhance)
            self.high_proj = nn.ModuleDict({
                name: Projector(config.enhance.channels(name), ph, hidden)
                for name in config.enhance.layers})
        self.lm = _Qwen2(config)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("stage_ids", torch.tensor(config.lm.stage_token_ids),
                             persistent=False)
        self.register_buffer("prompt_ids", torch.tensor(config.direct_prompt_ids),
                             persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(n, S, S, 3)`` -> normalised float ``(n, 3, S, S)`` (EEGVLM's, to
        float rounding), in channels-last memory."""
        s = self.config.vision.image_size
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (s, s, 3):
            raise ValueError(
                f"The 'images' parameter must be uint8 RGB of shape ({s}, {s}, 3) or "
                f"(n, {s}, {s}, 3), but got dtype {x.dtype} and shape {tuple(x.shape)}.")
        # (u / 255 - mean) / std as one multiply-add (a third of the passes), and the
        # images' own channels-last layout kept: the convolutions want it (_ready).
        x = x.to(self.device).permute(0, 3, 1, 2).float()
        return torch.addcmul(-self.pixel_mean / self.pixel_std, x,
                             1.0 / (255.0 * self.pixel_std))

    @torch.no_grad()
    def stage_probs(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Probabilities of the stages ``(n, len(stages))`` for the direct prompt."""
        x = self.preprocess(images)
        parts = []
        if self.use_enhance:
            xe = x.contiguous(memory_format=torch.channels_last)  # a no-op from preprocess
            parts += [self.high_proj[name](f) for name, f in self.enhance(xe).items()]
        if self.use_clip:
            parts.append(self.low_proj(self.visual(x)))
        tokens = torch.cat(parts, dim=1)
        text = self.lm.model.embed_tokens(self.prompt_ids.unsqueeze(0).expand(len(x), -1))
        logits = self.lm.last_logits(torch.cat([tokens, text], dim=1))
        return logits.index_select(-1, self.stage_ids).float().softmax(dim=-1)


def load_stager(folder: str | Path, device: str = "cpu",
                expected_renderer_version: str | None = None) -> tuple[StageOnlyVLM, dict]:
    """Verify a model folder and load its stage-only model.

    Returns
    -------
    model, manifest
        The model in eval mode on ``device``.

    Raises
    ------
    ModelFolderError
        As :func:`~eegvlm_desktop.ml.vlm.weights.load_model`; also when the config is not
        one :func:`supports` (use ``load_model`` for those).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from eegvlm_desktop.ml.vlm.weights import (CONFIG_FILE, WEIGHTS_FILE, ModelFolderError,
                                               check_folder)

    folder = Path(folder)
    cfg, manifest = check_folder(folder, expected_renderer_version)
    if not supports(cfg):
        raise ModelFolderError(f"The model in '{folder}' is not one the stage-only path "
                               f"builds ({CONFIG_FILE}: vision.arch={cfg.vision.arch!r}, "
                               f"lm.arch={cfg.lm.arch!r}); load it with load_model.")
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ModelFolderError(f"{WEIGHTS_FILE} in model folder '{folder}' cannot be read "
                               f"({err}). Copy the folder again or re-export.") from err
    model = StageOnlyVLM(cfg)
    # The full model's ViT keeps the blocks after the feature layer in the file's sense
    # only until pruning: the file holds exactly the used ones; anything else is an error.
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - tied_keys(model.state_dict())
    if missing or result.unexpected_keys:
        raise ModelFolderError(
            f"The weights in model folder '{folder}' do not fit its config.json: missing keys "
            f"{sorted(missing)[:10]}, unexpected keys {sorted(result.unexpected_keys)[:10]}. "
            "Re-export the model; do not mix files of different models.")
    return _ready(model.to(device)), manifest


def stager_from(full: nn.Module) -> StageOnlyVLM | None:
    """The stage-only forward of a loaded full model (its weights copied), or None.

    The app's engine keeps the full model for explanations and stages the night with this
    one: the same probabilities (to float rounding), ~30 % faster on 2 cores, for ~30 MB.
    None when the full model's shape is not one :func:`supports`, or its weights do not
    map one to one (then the full model stages, as before).
    """
    config = getattr(full, "config", None)
    if not isinstance(config, VLMConfig) or not supports(config):
        return None
    model = StageOnlyVLM(config)
    result = model.load_state_dict(full.state_dict(), strict=False)
    if set(result.missing_keys) - tied_keys(model.state_dict()) or result.unexpected_keys:
        return None
    device = next(full.parameters()).device
    return _ready(model.to(device))


def _ready(model: StageOnlyVLM) -> StageOnlyVLM:
    """Eval mode, then the inference-only shortcuts (:func:`_fold_batchnorm`)."""
    model.eval()
    if model.use_enhance:
        _fold_batchnorm(model.enhance)
        # oneDNN's convolutions run ~1.6x faster channels-last for these narrow (16-128)
        # layers on a CPU (0.65 -> 0.40 s per 320 images on 2 cores, folding included).
        model.enhance.to(memory_format=torch.channels_last)
    return model


def _fold_batchnorm(net: ResNet18Features) -> None:
    """Fold each eval-mode BatchNorm into the convolution before it, in place.

    The stage-only model never trains, so a BatchNorm is an affine map that torch's
    ``fuse_conv_bn_eval`` moves into the convolution's weights and bias: one pass over the
    feature maps instead of two. The outputs agree with the unfolded network to float32
    rounding (features within ~1e-5; ``tests/ml/test_stager.py`` checks the probabilities).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.conv1, net.bn1 = fuse_conv_bn_eval(net.conv1, net.bn1), nn.Identity()
    for i in range(1, net.depth + 1):
        for block in getattr(net, f"layer{i}"):
            block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
            if block.downsample is not None:
                conv, bn = block.downsample
                block.downsample = nn.Sequential(fuse_conv_bn_eval(conv, bn))

