"""EEG-VLM: CLIP ViT patch tokens + enhancement-CNN tokens -> a small causal LM.

Token stream given to the LM (``inputs_embeds``)::

    [high-level tokens][CLIP patch tokens][<s> prompt ...][answer ... </s>]

* low-level tokens: the patch tokens of a late CLIP block (``clip_feature_layer``), as LLaVA does;
* high-level tokens: pooled intermediate maps of the enhancement CNN (the paper's module);
* both go through their own 2-layer MLP projector; a multi-level InfoNCE loss aligns each
  projected high-level level with the pooled projected patch tokens;
* the LM learns the reasoning text (LM loss) and, jointly, a direct answer: the logits of the
  stage tokens right after the short direct prompt (the fast path ``stage_probs``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transformer import VisionTransformer
from torch import nn

from eegvlm_desktop.ml.vlm.config import VLMConfig
from eegvlm_desktop.ml.vlm.enhance import Projector, ResNet18Features
from eegvlm_desktop.ml.vlm.pretrained import (build_lm, build_vision_tower, check_lm,
                                              check_vision_tower)
from eegvlm_desktop.ml.vlm.tokenizer import IGNORE_INDEX

ImageInput = np.ndarray | torch.Tensor


@dataclass
class VLMOutput:
    """Losses of one training forward (``loss`` is the weighted sum that is optimised)."""

    loss: torch.Tensor
    lm_loss: torch.Tensor
    align_loss: torch.Tensor
    direct_loss: torch.Tensor
    logits: torch.Tensor | None = None


@dataclass
class GenerationResult:
    """Greedy generation: the new token ids (EOS excluded) and why it stopped.

    ``stop_reason`` is ``'eos'``, ``'max_tokens'`` or ``'cancelled'``.
    """

    token_ids: list[int]
    stop_reason: str


class EEGVLM(nn.Module):
    """The EEG vision-language model.

    Parameters
    ----------
    config : VLMConfig
        A validated config bound to its tokenizer (:meth:`VLMConfig.bind_tokenizer`).
    visual, lm : optional
        Ready towers of the config's shape (``factory.new_model`` passes a checkpoint-initialised
        ViT and a pretrained LM); by default both are built from the config with random weights,
        which is what ``load_model`` wants before loading the saved ones.

    Notes
    -----
    Call ``model.eval()`` before inference: the enhancement CNN has BatchNorm layers.
    """

    def __init__(self, config: VLMConfig, *, visual: VisionTransformer | None = None,
                 lm: nn.Module | None = None) -> None:
        super().__init__()
        config.validate()
        if not config.is_bound:
            raise ValueError("The 'config' parameter is not bound to a tokenizer: call "
                             "config.bind_tokenizer(tokenizer) before building the model.")
        self.config = config
        v, hidden = config.vision, config.lm.hidden_size
        ph = config.projector_hidden or hidden
        self.use_clip = config.fusion in ("both", "clip")
        self.use_enhance = config.fusion in ("both", "enhance")
        if visual is not None and not self.use_clip:
            raise ValueError("The 'visual' parameter was given, but fusion='enhance' uses no ViT.")
        self.visual: VisionTransformer | None = None
        self.enhance: ResNet18Features | None = None
        if self.use_clip:
            self.visual = visual if visual is not None else build_vision_tower(v)
            check_vision_tower(self.visual, v)
            # Blocks after the feature layer, the final norm and the CLIP head are never used.
            self.visual.prune_intermediate_layers([config.feature_layer_index],
                                                  prune_norm=True, prune_head=True)
            self.low_proj = Projector(v.width, ph, hidden)
        if self.use_enhance:
            self.enhance = ResNet18Features(config.enhance)
            self.high_proj = nn.ModuleDict({
                name: Projector(config.enhance.channels(name), ph, hidden)
                for name in config.enhance.layers})
        self.lm = lm if lm is not None else build_lm(config.lm)
        check_lm(self.lm, config.lm)
        self.n_high = config.enhance.n_tokens if self.use_enhance else 0
        self.n_patches = v.grid ** 2 if self.use_clip else 0
        self.register_buffer("pixel_mean", torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("stage_ids", torch.tensor(config.lm.stage_token_ids),
                             persistent=False)

    # ----------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def n_image_tokens(self) -> int:
        """Number of image tokens in front of the text."""
        return self.n_high + self.n_patches

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def preprocess(self, images: ImageInput) -> torch.Tensor:
        """Turn renderer output into normalised pixels ``(n, 3, S, S)`` float32.

        Parameters
        ----------
        images : ndarray or Tensor
            uint8 RGB ``(S, S, 3)`` or ``(n, S, S, 3)`` with ``S = vision.image_size``; a float
            tensor ``(n, 3, S, S)`` is taken as already preprocessed.
        """
        s = self.config.vision.image_size
        x = torch.as_tensor(images)
        if x.is_floating_point() and x.ndim == 4 and tuple(x.shape[1:]) == (3, s, s):
            return x.to(self.device).contiguous()
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (s, s, 3):
            raise ValueError(
                f"The 'images' parameter must be uint8 RGB of shape ({s}, {s}, 3) or "
                f"(n, {s}, {s}, 3), but got dtype {x.dtype} and shape {tuple(x.shape)}.")
        # .contiguous() matters: a permuted (channels-last) input crashed the process with heap
        # corruption in the CPU (oneDNN) conv backward of the narrow ResNet (torch 2.14.1).
        x = x.to(self.device).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        return (x - self.pixel_mean) / self.pixel_std

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def _as_ids(self, ids: Sequence[int] | torch.Tensor | None, name: str) -> torch.Tensor:
        if ids is None:
            ids = self.config.direct_prompt_ids
        t = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        if t.ndim != 1 or t.numel() == 0:
            raise ValueError(f"The '{name}' parameter must be a non-empty 1-D sequence of token "
                             f"ids, but got shape {tuple(t.shape)}.")
        return t

    # ----------------------------------------------------------------- image tokens
    def encode_images(self, images: ImageInput) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens in LM space ``(n, K, hidden)`` and the alignment loss (0 if unused)."""
        x = self.preprocess(images)
        parts: list[torch.Tensor] = []
        high_levels: list[torch.Tensor] = []
        if self.use_enhance:
            for name, feats in self.enhance(x).items():
                tok = self.high_proj[name](feats)
                parts.append(tok)
                high_levels.append(tok.mean(dim=1))
        low = None
        if self.use_clip:
            out = self.visual.forward_intermediates(
                x, indices=[self.config.feature_layer_index], output_fmt="NLC",
                intermediates_only=True)
            low = self.low_proj(out["image_intermediates"][0])  # class token already split off
            parts.append(low)
        tokens = torch.cat(parts, dim=1)
        align = tokens.new_zeros(())
        if low is not None and high_levels:
            align = torch.stack([self._align(h, low.mean(dim=1)) for h in high_levels]).mean()
        return tokens, align

    def _align(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between pooled high- and low-level tokens (in-batch negatives).

        With a single image there are no negatives, so 1 - cosine similarity is used instead.
        """
        high, low = F.normalize(high, dim=-1), F.normalize(low, dim=-1)
        if high.shape[0] < 2:
            return (1.0 - (high * low).sum(-1)).mean()
        logits = high @ low.T / self.config.align_temperature
        target = torch.arange(high.shape[0], device=high.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

    def _stream(self, image_tokens: torch.Tensor, ids: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenate image tokens and text embeddings; returns (inputs_embeds, mask)."""
        n, k = image_tokens.shape[:2]
        if ids.ndim == 1:
            ids = ids.unsqueeze(0).expand(n, -1)
        if mask is None:
            mask = torch.ones_like(ids)
        total = k + ids.shape[1]
        if total > self.config.lm.max_positions:
            raise ValueError(f"The sequence ({k} image + {ids.shape[1]} text tokens = {total}) "
                             f"exceeds 'lm.max_positions' ({self.config.lm.max_positions}).")
        embeds = torch.cat([image_tokens, self.embed_text(ids)], dim=1)
        full_mask = torch.cat([mask.new_ones(n, k), mask], dim=1)
        return embeds, full_mask

    # ----------------------------------------------------------------- training
    def forward(self, images: ImageInput, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                stage_labels: torch.Tensor | None = None) -> VLMOutput:
        """Weighted sum of the LM, alignment and direct-answer losses.

        Parameters
        ----------
        images : ndarray or Tensor
            ``n`` rendered epochs (see :meth:`preprocess`).
        input_ids, attention_mask, labels : Tensor ``(n, T)``
            Right-padded reasoning examples (``tokenizer.encode_example``); labels are
            ``-100`` where no loss is wanted. Without labels the LM loss is 0.
        stage_labels : Tensor ``(n,)``, optional
            Stage indices into ``config.stages`` for the direct-answer loss.
        """
        image_tokens, align = self.encode_images(images)
        embeds, mask = self._stream(image_tokens, input_ids, attention_mask)
        full_labels = None
        if labels is not None:
            full_labels = torch.cat([labels.new_full(image_tokens.shape[:2], IGNORE_INDEX),
                                     labels], dim=1)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, labels=full_labels,
                      use_cache=False)
        lm_loss = out.loss if out.loss is not None else align.new_zeros(())
        direct = align.new_zeros(())
        if stage_labels is not None:
            logits = self._stage_logits(image_tokens, self._as_ids(None, "direct_prompt_ids"))
            direct = F.cross_entropy(logits, stage_labels.to(self.device))
        cfg = self.config
        loss = lm_loss + cfg.align_weight * align + cfg.direct_weight * direct
        return VLMOutput(loss, lm_loss, align, direct, out.logits)

    # ----------------------------------------------------------------- inference
    def _cache_kwargs(self, out: object) -> dict[str, object]:
        """Pass the KV cache back under the name this transformers version expects.

        transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, which
        fails the tests); earlier 5.x releases only know ``past_key_values``.
        """
        if "cache" in inspect.signature(self.lm.forward).parameters:
            return {"cache": out.cache}
        return {"past_key_values": out.past_key_values}

    def _stage_logits(self, image_tokens: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        embeds, mask = self._stream(image_tokens, prompt)
        # Only the last position is read: logits_to_keep=1 skips the vocabulary projection
        # of every other position.
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False,
                      logits_to_keep=1)
        return out.logits[:, -1, :].index_select(-1, self.stage_ids)

    @torch.no_grad()
    def stage_probs(self, images: ImageInput,
                    prompt_ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities of the stages ``(n, len(stages))`` in one batched forward.

        Parameters
        ----------
        images : ndarray or Tensor
            ``n`` rendered epochs.
        prompt_ids : sequence of int, optional
            The direct prompt (with BOS), shared by all images; default
            ``config.direct_prompt_ids``. The softmax runs over the stage tokens only.
        """
        image_tokens, _ = self.encode_images(images)
        logits = self._stage_logits(image_tokens, self._as_ids(prompt_ids, "prompt_ids"))
        return logits.float().softmax(dim=-1)

    @torch.no_grad()
    def generate_reasoning(self, image: ImageInput, prompt_ids: Sequence[int] | torch.Tensor,
                           max_new_tokens: int = 128,
                           on_token: Callable[[int], None] | None = None,
                           should_stop: Callable[[], bool] | None = None,
                           allowed: Callable[[list[int]], Collection[int]] | None = None
                           ) -> GenerationResult:
        """Greedy decoding with a KV cache, one callback per token, cancellable.

        Parameters
        ----------
        image : ndarray or Tensor
            One rendered epoch.
        prompt_ids : sequence of int
            The reasoning prompt (with BOS), plus any text the answer must start with.
        max_new_tokens : int
            Upper bound on generated tokens.
        on_token : callable, optional
            Called with each new token id (not EOS) as soon as it is chosen.
        should_stop : callable, optional
            Polled before every step; returning True stops with ``stop_reason='cancelled'``.
        allowed : callable, optional
            ``allowed(tokens_so_far)`` gives the token ids the next token may be (constrained
            decoding); the most likely of them is chosen. An empty collection ends the text
            like EOS. Where it allows one token only, no forward is run for that step: the
            token is fed to the cache with the next one that needs logits.
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"The 'max_new_tokens' parameter must be a positive integer, "
                             f"but got {max_new_tokens!r}.")
        prompt = self._as_ids(prompt_ids, "prompt_ids")
        tokens: list[int] = []
        if should_stop is not None and should_stop():
            return GenerationResult(tokens, "cancelled")
        image_tokens, _ = self.encode_images(image)
        if image_tokens.shape[0] != 1:
            raise ValueError(f"The 'image' parameter must hold one image, but got "
                             f"{image_tokens.shape[0]}.")
        embeds, _ = self._stream(image_tokens, prompt)
        if embeds.shape[1] + max_new_tokens > self.config.lm.max_positions:
            raise ValueError(f"The 'max_new_tokens' parameter ({max_new_tokens}) plus the "
                             f"{embeds.shape[1]} input tokens exceeds 'lm.max_positions' "
                             f"({self.config.lm.max_positions}).")
        out = self.lm(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
        eos = self.config.lm.eos_id
        pending: list[int] = []  # chosen tokens not yet in the KV cache
        for _ in range(max_new_tokens):
            if should_stop is not None and should_stop():
                return GenerationResult(tokens, "cancelled")
            choices = None if allowed is None else list(allowed(tokens))
            if choices is not None and len(choices) <= 1:
                if not choices:
                    return GenerationResult(tokens, "eos")
                next_id = int(choices[0])  # forced: its logits would not change it
            else:
                if pending:  # a token is only fed to the cache when its logits are needed
                    nxt = self.embed_text(torch.tensor([pending], device=self.device))
                    out = self.lm(inputs_embeds=nxt, use_cache=True, logits_to_keep=1,
                                  **self._cache_kwargs(out))
                    pending = []
                logits = out.logits[0, -1]
                if choices is None:
                    next_id = int(logits.argmax())
                else:
                    pick = torch.tensor(choices, device=logits.device)
                    next_id = int(pick[logits.index_select(0, pick).argmax()])
            if next_id == eos:
                return GenerationResult(tokens, "eos")
            tokens.append(next_id)
            pending.append(next_id)
            if on_token is not None:
                on_token(next_id)
        return GenerationResult(tokens, "max_tokens")

    @torch.no_grad()
    def attention_maps(self, image: ImageInput, prompt_ids: Sequence[int] | torch.Tensor,
                       answer_ids: Sequence[int] | torch.Tensor | None = None,
                       layers: Sequence[int] | None = None) -> torch.Tensor:
        """LM attention over the CLIP patch grid, one map per answer token.

        The map of answer token ``i`` is the attention of the position that *predicts* it
        (the one before), i.e. what the model looked at when choosing that token. Without
        ``answer_ids`` a single map is returned: the last prompt position (the direct answer).

        Parameters
        ----------
        image : ndarray or Tensor
            One rendered epoch.
        prompt_ids, answer_ids : sequence of int
            The prompt (with BOS) and e.g. the generated token ids.
        layers : sequence of int, optional
            LM layers to average (negative allowed); default all. Heads are always averaged.

        Returns
        -------
        Tensor ``(n_answer or 1, grid, grid)``
            Raw attention mass on each patch (not renormalised; the rest went to text and
            high-level tokens).
        """
        if not self.use_clip:
            raise ValueError("attention_maps needs CLIP patch tokens, but the model was built "
                             f"with fusion={self.config.fusion!r}; allowed: 'both', 'clip'.")
        prompt = self._as_ids(prompt_ids, "prompt_ids")
        n_answer = 0
        if answer_ids is not None and len(answer_ids) > 0:
            answer = self._as_ids(answer_ids, "answer_ids")
            n_answer = answer.numel()
            prompt = torch.cat([prompt, answer])
        image_tokens, _ = self.encode_images(image)
        embeds, mask = self._stream(image_tokens[:1], prompt)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False,
                      output_attentions=True, logits_to_keep=1)
        n_layers = len(out.attentions)
        chosen = range(n_layers) if layers is None else [i % n_layers for i in layers]
        att = torch.stack([out.attentions[i][0] for i in chosen]).float().mean(dim=(0, 1))
        seq = embeds.shape[1]
        if n_answer:
            rows = torch.arange(seq - n_answer - 1, seq - 1, device=att.device)
        else:
            rows = torch.tensor([seq - 1], device=att.device)
        patches = att[rows][:, self.n_high:self.n_high + self.n_patches]
        g = self.config.vision.grid
        return patches.reshape(-1, g, g)
