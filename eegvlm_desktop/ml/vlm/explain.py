"""Explain one epoch: the reasoning text, its steps, and where the model looked for each.

Grounded reasoning (issue 19): given the epoch's measured evidence, the answer starts with
the measured steps 1-3 (:func:`~eegvlm_desktop.core.picture.cot.measured_steps`), tokenised
exactly as in the training targets, and the model writes step 4 and ``Stage: X`` by greedy
decoding constrained to the texts that are true of the evidence: for each stage, its AASM
rule with the verdict the measured numbers give
(:func:`~eegvlm_desktop.core.picture.cot.rule_step`). So the model chooses the stage (its most
likely token among the five where the rule names it), and everything the text states is
measured. Why constrained: left free after the measured steps, the shipped model wrote the
verdict the numbers give on 18 of 40 training-night epochs and 2-20 of 40 on DREAMS excerpts
(the numbers in its verdicts were often not the stated ones), so its step 4 could not be
trusted. Without evidence it writes freely (the old path). Every step is then checked against
the evidence (:mod:`eegvlm_desktop.core.picture.verify`).

The attention maps come from one teacher-forced forward over ``[image][prompt][measured steps]
[generated answer]`` with the same weights, image and tokens that produced the text, so each
map is what the model attended to when it chose (or was given) those tokens
(:meth:`EEGVLM.attention_maps`); the maps of all steps come from that one forward. Maps of
the tokens of one reasoning line are averaged into that step's map; the final answer's map is
the map of the stage token(s) after ``Stage:``. The direct (fast-path) answer gets its own map,
from the forward that produced the hypnogram's probabilities.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eegvlm_desktop.core.picture.cot import (PROMPT, format_answer, measured_steps, parse_answer,
                                             rule_step)
from eegvlm_desktop.core.picture.evidence import EpochEvidence
from eegvlm_desktop.core.picture.verify import StepCheck, verify_reasoning
from eegvlm_desktop.core.stages import STAGES
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
    token_steps : list of int
        The step each token of the answer (measured steps included) writes into; -1 for
        whitespace.
    measured : int
        How many leading steps are the app's measurement given to the model (3 when
        grounded, 0 when the model wrote everything).
    checks : list of StepCheck
        The verification of each step against the measured evidence (empty without it).
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
    measured: int = 0
    checks: list[StepCheck] = field(default_factory=list)

    @property
    def verified(self) -> bool | None:
        """True when every step is verified; None when there was no evidence to check."""
        return all(c.verified for c in self.checks) if self.checks else None


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


def grounded_tokens(tokenizer: Any, ev: EpochEvidence, measured: list[str] | None = None
                    ) -> tuple[list[int], list[list[int]]]:
    """Token ids of the measured steps and of every true ending, as training tokenises them.

    The training target of an epoch is ``format_answer(reasoning_steps(ev, stage), stage)``
    encoded after a space (:func:`~.tokenizer.encode_example`). Steps 1-3 do not depend on the
    stage, so the five targets share their leading tokens; the shared tokens that write steps
    1-3 are the forced prefix, and what follows in each target (step 4, ``Stage: X``, EOS) is
    one allowed ending. Cutting the targets' own token sequences, rather than encoding the
    prefix alone, keeps the tokens identical where a tokenizer merges across the cut.

    Parameters
    ----------
    tokenizer : PreTrainedTokenizerFast
    ev : EpochEvidence
        The epoch's evidence; step 4's true texts are ``rule_step(ev, stage)``.
    measured : list of str, optional
        Steps 1-3 as already written (a dataset's training target); default
        ``measured_steps(ev)``.

    Returns
    -------
    prefix : list of int
    endings : list of list of int
        One per stage, in ``STAGES`` order, each ending with EOS.
    """
    lines = measured_steps(ev) if measured is None else list(measured)
    measured_text = "\n".join(lines)
    targets = [list(tokenizer.encode(
        " " + format_answer(lines + [f"4. {rule_step(ev, s)}"], s).strip(),
        add_special_tokens=False)) for s in STAGES]
    k = 0
    while all(len(t) > k and t[k] == targets[0][k] for t in targets):
        k += 1
    # Shared tokens may run past step 3 ("\n4. AASM rule for"): keep those inside steps 1-3.
    while k and not measured_text.startswith(
            tokenizer.decode(targets[0][:k], skip_special_tokens=True).strip()):
        k -= 1
    eos = int(tokenizer.eos_token_id)
    return targets[0][:k], [t[k:] + [eos] for t in targets]


def _allowed_by(endings: list[list[int]]) -> Callable[[list[int]], list[int]]:
    """Constraint for :meth:`EEGVLM.generate_reasoning`: stay on one of ``endings``."""
    def allowed(tokens: list[int]) -> list[int]:
        n = len(tokens)
        return list(dict.fromkeys(e[n] for e in endings if len(e) > n and e[:n] == tokens))
    return allowed


@torch.no_grad()
def explain_epoch(model: EEGVLM, tokenizer: Any, image: ImageInput, *,
                  evidence: EpochEvidence | None = None,
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
    evidence : EpochEvidence, optional
        The epoch's measured evidence (:func:`~eegvlm_desktop.core.picture.evidence.measure_night`).
        Given: grounded reasoning (measured steps 1-3, constrained step 4), verified step by
        step. None: the model writes every step freely (unverified; the pre-issue-19 path).
    max_new_tokens : int
        Upper bound on the length of what the model writes (free path only: the grounded
        ending is at most the longest true ending).
    on_text : callable, optional
        Called with the text decoded so far after each token (for streaming display); the
        measured steps arrive at once.
    should_stop : callable, optional
        Polled before every token; cancels generation (the partial text is still explained).
    """
    prompt = encode_prompt(tokenizer, PROMPT)
    prefix: list[int] = []
    allowed = None
    if evidence is not None:
        prefix, endings = grounded_tokens(tokenizer, evidence)
        allowed = _allowed_by(endings)
        max_new_tokens = max(len(e) for e in endings)
    ids: list[int] = list(prefix)
    if on_text is not None and prefix:
        on_text(tokenizer.decode(ids, skip_special_tokens=True))

    def _on_token(tid: int) -> None:
        ids.append(tid)
        if on_text is not None:
            on_text(tokenizer.decode(ids, skip_special_tokens=True))

    gen = model.generate_reasoning(image, prompt + prefix, max_new_tokens=max_new_tokens,
                                   on_token=_on_token, should_stop=should_stop,
                                   allowed=allowed)
    answer_ids = prefix + gen.token_ids
    text, lines = token_lines(tokenizer, answer_ids)
    steps = [ln.strip() for ln in text.split("\n")]
    # Line numbers count every "\n"; keep the non-empty lines and remap token lines to them.
    keep = [k for k, s in enumerate(steps) if s]
    remap = {old: new for new, old in enumerate(keep)}
    lines = [remap.get(ln, -1) for ln in lines]
    steps = [steps[k] for k in keep]

    grid = model.config.vision.grid
    direct_map = model.attention_maps(image, model.config.direct_prompt_ids)[0].cpu().numpy()
    probs = model.stage_probs(image)[0].cpu().numpy()
    if answer_ids:
        # One teacher-forced forward over prompt + measured steps + generated tokens: the maps
        # of every step, measured or written, come from this same pass.
        maps = model.attention_maps(image, prompt, answer_ids).cpu().numpy()
        step_maps = _group(maps, lines, len(steps))
        answer_map = _answer_map(model, maps, answer_ids, lines, steps)
    else:
        step_maps = np.zeros((0, grid, grid), dtype=np.float32)
        answer_map = direct_map.copy()
    n_measured = len(measured_steps(evidence)) if evidence is not None else 0
    checks = (verify_reasoning(steps, evidence, measured=min(n_measured, len(steps)))
              if evidence is not None else [])
    return Explanation(text=text, steps=steps, stage=parse_answer(text), probs=probs,
                       step_maps=step_maps, answer_map=answer_map.astype(np.float32),
                       direct_map=direct_map.astype(np.float32),
                       stop_reason=gen.stop_reason, token_steps=lines,
                       measured=min(n_measured, len(steps)), checks=checks)


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
                        expert: list[str], max_new_tokens: int = DEFAULT_MAX_TOKENS,
                        evidence: Sequence[EpochEvidence] | None = None,
                        answers: Sequence[str] | None = None) -> dict[str, Any]:
    """Generate the reasoning for each image and compare its stage with the direct answer.

    The whole-night pass uses the direct answer; the scorer reads the reasoning. This says
    how often the two agree, and how accurate each is, on the same epochs.

    Parameters
    ----------
    evidence : sequence of EpochEvidence, optional
        One per image: the reasoning is the app's grounded one (:func:`explain_epoch`).
    answers : sequence of str, optional
        Instead of ``evidence``: each image's training target (``NightData.answers``), whose
        steps 1-3 are its measured steps; step 4's true texts follow from their numbers
        (:func:`~eegvlm_desktop.core.picture.verify.stated_evidence`), so a saved dataset,
        which keeps no evidence, gets the same grounded reasoning. A target that cannot be
        read that way is reasoned freely (counted in ``free``).
    Neither: free generation (the path before issue 19).

    Returns
    -------
    dict
        ``epochs``, ``agree`` (reasoned stage == direct stage), ``no_stage`` (reasoning that
        names none), ``reasoned_accuracy`` and ``direct_accuracy`` against ``expert``,
        ``grounded`` and ``free`` (how many epochs were reasoned each way).
    """
    from eegvlm_desktop.core.picture.verify import stated_evidence
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    for name, given in (("evidence", evidence), ("answers", answers)):
        if given is not None and len(given) != len(images):
            raise ValueError(f"Invalid value for the '{name}' parameter: it must hold one "
                             f"entry per image ({len(images)}), but got {len(given)}.")
    if evidence is not None and answers is not None:
        raise ValueError("The 'evidence' and 'answers' parameters were both given; give one "
                         "(evidence: measured; answers: training targets) or neither.")
    stages = list(model.config.stages)
    direct = [stages[i] for i in predict_probs(model, images).argmax(1)]
    prompt = encode_prompt(tokenizer, PROMPT)
    reasoned: list[str | None] = []
    grounded = 0
    for k, img in enumerate(images):
        prefix: list[int] = []
        allowed, limit = None, max_new_tokens
        ev, measured = (evidence[k], None) if evidence is not None else (None, None)
        if answers is not None:
            lines = [ln.strip() for ln in answers[k].strip().split("\n") if ln.strip()]
            ev, measured = stated_evidence(lines), lines[:3]
        if ev is not None:
            prefix, endings = grounded_tokens(tokenizer, ev, measured)
            allowed, limit = _allowed_by(endings), max(len(e) for e in endings)
            grounded += 1
        gen = model.generate_reasoning(img, prompt + prefix, max_new_tokens=limit,
                                       allowed=allowed)
        reasoned.append(parse_answer(tokenizer.decode(prefix + gen.token_ids,
                                                      skip_special_tokens=True)))
    n = len(images)
    return {"epochs": n,
            "agree": sum(r == d for r, d in zip(reasoned, direct)),
            "no_stage": sum(r is None for r in reasoned),
            "reasoned_accuracy": sum(r == e for r, e in zip(reasoned, expert)) / n if n else None,
            "direct_accuracy": sum(d == e for d, e in zip(direct, expert)) / n if n else None,
            "grounded": grounded, "free": n - grounded}
