"""Explain one epoch: the reasoning text, its steps, and where the model looked for each.

The attention maps come from one teacher-forced forward over ``[image][prompt][generated
answer]`` with the same weights, image and tokens that produced the text, so each map is what
the model attended to when it chose those tokens (:meth:`EEGVLM.attention_maps`). Maps of
the tokens of one reasoning line are averaged into that step's map; the final answer's map is
the map of the stage token(s) after ``Stage:``. The direct (fast-path) answer gets its own map,
from the forward that produced the hypnogram's probabilities.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eegvlm_desktop.core.picture.cot import PROMPT, parse_answer
from eegvlm_desktop.ml.vlm.model import EEGVLM, ImageInput
from eegvlm_desktop.ml.vlm.tokenizer import encode_prompt

#: Enough for the four steps and the answer the default model writes (~220 tokens).
DEFAULT_MAX_TOKENS = 320


@dataclass
class Explanation:
    """The model's explanation of one epoch (plain data: safe to send between threads).

    Attributes
    ----------
    text : str
        The generated reasoning, as written.
    steps : list of str
        Its non-empty lines, in order (the numbered steps, then ``Stage: X``).
    stage : str or None
        The stage the reasoning ends with (``parse_answer``), None if it names none.
    probs : ndarray (n_stages,)
        Direct-answer probabilities (the fast path) for the same image.
    step_maps : ndarray (n_steps, grid, grid)
        Mean attention of each step's tokens over the CLIP patch grid.
    answer_map : ndarray (grid, grid)
        Attention of the final stage token(s).
    direct_map : ndarray (grid, grid)
        Attention of the direct answer (the position that gives ``probs``).
    stop_reason : str
        ``'eos'``, ``'max_tokens'`` or ``'cancelled'`` (then the maps cover what was written).
    """

    text: str
    steps: list[str]
    stage: str | None
    probs: np.ndarray
    step_maps: np.ndarray
    answer_map: np.ndarray
    direct_map: np.ndarray
    stop_reason: str
    token_steps: list[int] = field(default_factory=list)


def token_lines(tokenizer: Any, token_ids: list[int]) -> tuple[str, list[int]]:
    """Decode ``token_ids`` and give each token the index of the text line it writes into.

    Tokens that only write whitespace (e.g. a newline) get -1. Decoding is cumulative,
    because a sentencepiece-style token's text depends on what precedes it.

    Returns
    -------
    text : str
    lines : list of int, one per token
    """
    lines: list[int] = []
    prev = ""
    for i in range(len(token_ids)):
        text = tokenizer.decode(token_ids[:i + 1], skip_special_tokens=True)
        # Normally ``text`` extends ``prev``; if decoding rewrote the tail (a merged byte
        # sequence), the new token owns everything after the common prefix.
        start = len(prev) if text.startswith(prev) else len(_common_prefix(prev, text))
        chunk = text[start:]
        if not chunk.strip():
            lines.append(-1)
        else:
            lead = len(chunk) - len(chunk.lstrip())
            lines.append(text[:start + lead].count("\n"))
        prev = text
    return prev, lines


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _group(maps: np.ndarray, lines: list[int], n_lines: int) -> np.ndarray:
    """Mean map per line index (zeros for a line with no token, which cannot happen here)."""
    g = maps.shape[-1]
    out = np.zeros((n_lines, g, g), dtype=np.float32)
    for k in range(n_lines):
        rows = [i for i, ln in enumerate(lines) if ln == k]
        if rows:
            out[k] = maps[rows].mean(axis=0)
    return out


@torch.no_grad()
def explain_epoch(model: EEGVLM, tokenizer: Any, image: ImageInput, *,
                  max_new_tokens: int = DEFAULT_MAX_TOKENS,
                  on_text: Callable[[str], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Explanation:
    """Generate the reasoning for one rendered epoch and attribute attention to its steps.

    Parameters
    ----------
    model : EEGVLM
        A model in eval mode, built with CLIP patch tokens (fusion 'both' or 'clip').
    tokenizer : PreTrainedTokenizerFast
        The model's tokenizer.
    image : ndarray
        One image from :func:`eegvlm_desktop.core.picture.rendering.render_epoch`.
    max_new_tokens : int
        Upper bound on the reasoning length.
    on_text : callable, optional
        Called with the text decoded so far after each token (for streaming display).
    should_stop : callable, optional
        Polled before every token; cancels generation (the partial text is still explained).
    """
    prompt = encode_prompt(tokenizer, PROMPT)
    ids: list[int] = []

    def _on_token(tid: int) -> None:
        ids.append(tid)
        if on_text is not None:
            on_text(tokenizer.decode(ids, skip_special_tokens=True))

    gen = model.generate_reasoning(image, prompt, max_new_tokens=max_new_tokens,
                                   on_token=_on_token, should_stop=should_stop)
    text, lines = token_lines(tokenizer, gen.token_ids)
    steps = [ln.strip() for ln in text.split("\n")]
    # Line numbers count every "\n"; keep the non-empty lines and remap token lines to them.
    keep = [k for k, s in enumerate(steps) if s]
    remap = {old: new for new, old in enumerate(keep)}
    lines = [remap.get(ln, -1) for ln in lines]
    steps = [steps[k] for k in keep]

    grid = model.config.vision.grid
    direct_map = model.attention_maps(image, model.config.direct_prompt_ids)[0].cpu().numpy()
    probs = model.stage_probs(image)[0].cpu().numpy()
    if gen.token_ids:
        maps = model.attention_maps(image, prompt, gen.token_ids).cpu().numpy()
        step_maps = _group(maps, lines, len(steps))
        answer_map = _answer_map(model, maps, gen.token_ids, lines, steps)
    else:
        step_maps = np.zeros((0, grid, grid), dtype=np.float32)
        answer_map = direct_map.copy()
    return Explanation(text=text, steps=steps, stage=parse_answer(text), probs=probs,
                       step_maps=step_maps, answer_map=answer_map.astype(np.float32),
                       direct_map=direct_map.astype(np.float32),
                       stop_reason=gen.stop_reason, token_steps=lines)


def _answer_map(model: EEGVLM, maps: np.ndarray, token_ids: list[int], lines: list[int],
                steps: list[str]) -> np.ndarray:
    """Map of the stage token(s) of the last ``Stage:`` line; else the last line's mean."""
    last = next((k for k in range(len(steps) - 1, -1, -1)
                 if steps[k].lower().startswith("stage")), len(steps) - 1)
    stage_ids = set(model.config.lm.stage_token_ids)
    rows = [i for i, (t, ln) in enumerate(zip(token_ids, lines)) if ln == last and t in stage_ids]
    if not rows:
        rows = [i for i, ln in enumerate(lines) if ln == last] or list(range(len(token_ids)))
    return maps[rows].mean(axis=0)


def reasoning_agreement(model: EEGVLM, tokenizer: Any, images: np.ndarray,
                        expert: list[str], max_new_tokens: int = DEFAULT_MAX_TOKENS
                        ) -> dict[str, Any]:
    """Generate the reasoning for each image and compare its stage with the direct answer.

    The whole-night pass uses the direct answer; the scorer reads the reasoning. This says
    how often the two agree, and how accurate each is, on the same epochs.

    Returns
    -------
    dict
        ``epochs``, ``agree`` (reasoned stage == direct stage), ``no_stage`` (reasoning that
        names none), ``reasoned_accuracy`` and ``direct_accuracy`` against ``expert``.
    """
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    stages = list(model.config.stages)
    direct = [stages[i] for i in predict_probs(model, images).argmax(1)]
    prompt = encode_prompt(tokenizer, PROMPT)
    reasoned: list[str | None] = []
    for img in images:
        gen = model.generate_reasoning(img, prompt, max_new_tokens=max_new_tokens)
        reasoned.append(parse_answer(tokenizer.decode(gen.token_ids, skip_special_tokens=True)))
    n = len(images)
    return {"epochs": n,
            "agree": sum(r == d for r, d in zip(reasoned, direct)),
            "no_stage": sum(r is None for r in reasoned),
            "reasoned_accuracy": sum(r == e for r, e in zip(reasoned, expert)) / n if n else None,
            "direct_accuracy": sum(d == e for d, e in zip(direct, expert)) / n if n else None}
