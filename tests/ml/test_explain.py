"""Per-step attention and explanations (ml/vlm/explain.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eegvlm_desktop.core.picture.cot import PROMPT as COT_PROMPT
from eegvlm_desktop.core.picture.cot import (format_answer, measured_steps, reasoning_steps,
                                             rule_step)
from eegvlm_desktop.core.picture.evidence import EpochEvidence
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.ml.vlm.explain import (explain_epoch, grounded_tokens, reasoning_agreement,
                                           token_lines)
from eegvlm_desktop.ml.vlm.tokenizer import (IGNORE_INDEX, encode_example, encode_prompt,
                                             train_tokenizer)

from tests.ml.conftest import TEXTS, make_model

SHIPPED = Path(__file__).resolve().parents[2] / "model_weights" / "default"
ANSWER = ("1. Alpha waves cover 60 % of the epoch.\n2. Two sleep spindles at 13 Hz.\n"
          "Stage: N2")


@pytest.fixture(scope="module")
def cot_tokenizer():
    # The explanation uses the real reasoning prompt, so the tokenizer must know its words.
    return train_tokenizer(TEXTS + [COT_PROMPT, ANSWER], vocab_size=400)


def test_token_lines_assigns_each_token_to_its_line(cot_tokenizer):
    ids = cot_tokenizer.encode(" " + ANSWER, add_special_tokens=False)
    text, lines = token_lines(cot_tokenizer, ids)
    assert text.strip() == ANSWER
    words = text.split("\n")
    for k in range(3):
        part = [t for t, ln in zip(ids, lines) if ln == k]
        assert cot_tokenizer.decode(part).strip().replace(" ", "") == \
            words[k].strip().replace(" ", "")
    assert set(lines) <= {-1, 0, 1, 2}


def test_explanation_maps_follow_the_generated_steps(cot_tokenizer):
    model = make_model(cot_tokenizer).eval()
    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    seen: list[str] = []
    ex = explain_epoch(model, cot_tokenizer, image, max_new_tokens=24, on_text=seen.append)
    grid = model.config.vision.grid
    assert ex.stop_reason in ("eos", "max_tokens")
    assert seen and seen[-1] == ex.text  # streamed text ends as the final text
    assert all(b.startswith(a[:len(a) // 2]) for a, b in zip(seen, seen[1:]))
    assert ex.step_maps.shape == (len(ex.steps), grid, grid)
    assert ex.answer_map.shape == ex.direct_map.shape == (grid, grid)
    assert np.isfinite(ex.step_maps).all() and (ex.step_maps >= 0).all()
    assert ex.probs.shape == (5,) and ex.probs.sum() == pytest.approx(1.0, abs=1e-5)
    # The step maps are the token maps of the same forward, averaged per line.
    prompt = encode_prompt(cot_tokenizer, COT_PROMPT)
    gen = model.generate_reasoning(image, prompt, max_new_tokens=24)
    maps = model.attention_maps(image, prompt, gen.token_ids).numpy()
    for k in range(len(ex.steps)):
        rows = [i for i, ln in enumerate(ex.token_steps) if ln == k]
        assert np.allclose(ex.step_maps[k], maps[rows].mean(0), atol=1e-6)


def test_explanation_can_be_cancelled(cot_tokenizer):
    model = make_model(cot_tokenizer).eval()
    image = np.zeros((224, 224, 3), dtype=np.uint8)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    ex = explain_epoch(model, cot_tokenizer, image, max_new_tokens=50, should_stop=stop)
    assert ex.stop_reason == "cancelled"
    assert len(ex.token_steps) <= 3


def test_explanation_needs_patch_tokens(cot_tokenizer):
    model = make_model(cot_tokenizer, fusion="enhance").eval()
    with pytest.raises(ValueError, match="fusion"):
        explain_epoch(model, cot_tokenizer, np.zeros((224, 224, 3), np.uint8), max_new_tokens=2)


def test_shipped_model_steps_attend_differently():
    """On the shipped model and a real epoch, each reasoning step has its own attention map."""
    from pathlib import Path

    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.vlm.weights import load_model
    from tests.conftest import EXAMPLE_PSG

    folder = Path(__file__).resolve().parents[2] / "model_weights" / "default"
    model, tok, _ = load_model(folder, "cpu")
    torch.manual_seed(0)
    rec = read_recording(EXAMPLE_PSG)
    img = render_night(rec, pick_roles(rec.ch_names, rec.ch_types), [301])[0]
    ex = explain_epoch(model, tok, img, max_new_tokens=200)
    assert len(ex.steps) >= 2
    assert not np.allclose(ex.step_maps[0], ex.step_maps[1])


# ------------------------------------------------------------------ grounded reasoning
EV = EpochEvidence(epoch=3, eeg_channel="EEG Fpz-Cz",
                   band_powers={"delta": 0.55, "theta": 0.25, "alpha": 0.1, "sigma": 0.06,
                                "beta": 0.04},
                   eeg_rms_uv=21.0, n_spindles=1, spindle_density=2.0, n_slow_waves=2,
                   slow_wave_percent=8.4, n_k_complexes=0, n_rems=0, eog_slow_power=55.0,
                   emg_rms_uv=1.1, emg_relative=0.7)


@pytest.fixture(scope="module")
def grounded_tokenizer():
    texts = [format_answer(reasoning_steps(EV, s), s) for s in STAGES]
    return train_tokenizer(TEXTS + [COT_PROMPT] + texts, vocab_size=600)


def _training_answer(tok, ev, stage):
    """The answer tokens (EOS included) of the training example for ``stage``."""
    _, labels = encode_example(tok, COT_PROMPT, format_answer(reasoning_steps(ev, stage), stage))
    return [t for t in labels if t != IGNORE_INDEX]


def test_grounded_tokens_are_the_training_targets_tokens(grounded_tokenizer):
    from eegvlm_desktop.ml.vlm.tokenizer import load_tokenizer

    shipped = load_tokenizer(SHIPPED / "tokenizer")
    for tok in (grounded_tokenizer, shipped):
        prefix, endings = grounded_tokens(tok, EV)
        assert tok.decode(prefix).strip() == "\n".join(measured_steps(EV))
        assert [prefix + e for e in endings] == [_training_answer(tok, EV, s) for s in STAGES]


def test_grounded_explanation_is_measured_then_a_true_ending(grounded_tokenizer):
    tok = grounded_tokenizer
    model = make_model(tok).eval()
    image = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    seen: list[str] = []
    ex = explain_epoch(model, tok, image, evidence=EV, on_text=seen.append)
    measured = measured_steps(EV)
    assert seen[0].strip() == "\n".join(measured)  # the measured steps arrive at once
    assert ex.measured == 3 and ex.steps[:3] == measured and ex.stop_reason == "eos"
    assert ex.stage in STAGES
    assert ex.steps[3:] == [f"4. {rule_step(EV, ex.stage)}", f"Stage: {ex.stage}"]
    assert [c.status for c in ex.checks] == ["measured"] * 3 + ["verified"] * 2
    assert ex.verified is True
    # The stage is the model's greedy choice where the five true endings part.
    prompt = encode_prompt(tok, COT_PROMPT)
    prefix, endings = grounded_tokens(tok, EV)
    j = 0
    while len({tuple(e[:j + 1]) for e in endings}) == 1:
        j += 1
    with torch.no_grad():
        tokens, _ = model.encode_images(image)
        embeds, mask = model._stream(tokens, torch.tensor(prompt + prefix + endings[0][:j]))
        logits = model.lm(inputs_embeds=embeds, attention_mask=mask).logits[0, -1]
    assert STAGES[int(np.argmax([float(logits[e[j]]) for e in endings]))] == ex.stage
    # Every step's map, measured or written, comes from one forward over all the tokens.
    answer = _training_answer(tok, EV, ex.stage)[:-1]  # without EOS
    maps = model.attention_maps(image, prompt, answer).numpy()
    for k in range(len(ex.steps)):
        rows = [i for i, ln in enumerate(ex.token_steps) if ln == k]
        assert rows and np.allclose(ex.step_maps[k], maps[rows].mean(0), atol=1e-6)


def test_free_explanation_is_not_verified(cot_tokenizer):
    model = make_model(cot_tokenizer).eval()
    ex = explain_epoch(model, cot_tokenizer, np.zeros((224, 224, 3), np.uint8),
                       max_new_tokens=8)
    assert ex.measured == 0 and ex.checks == [] and ex.verified is None


def test_reasoning_agreement_grounded_from_evidence_or_training_targets(grounded_tokenizer):
    tok = grounded_tokenizer
    model = make_model(tok).eval()
    images = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    by_evidence = reasoning_agreement(model, tok, images, ["N2", "W"], evidence=[EV, EV])
    assert by_evidence["grounded"] == 2 and by_evidence["free"] == 0
    assert by_evidence["epochs"] == 2 and by_evidence["no_stage"] == 0
    # A saved dataset keeps only the targets: their own numbers give the same reasoning.
    targets = [format_answer(reasoning_steps(EV, s), s) for s in ("N2", "W")]
    assert reasoning_agreement(model, tok, images, ["N2", "W"], answers=targets) == by_evidence
    mixed = reasoning_agreement(model, tok, images, ["N2", "W"], max_new_tokens=4,
                                answers=[targets[0], "Stage: W"])
    assert (mixed["grounded"], mixed["free"]) == (1, 1)
    with pytest.raises(ValueError, match="'evidence'.*one entry per image"):
        reasoning_agreement(model, tok, images, ["N2", "W"], evidence=[EV])
    with pytest.raises(ValueError, match="'evidence' and 'answers'"):
        reasoning_agreement(model, tok, images, ["N2", "W"], evidence=[EV, EV],
                            answers=targets)


def test_shipped_model_grounded_reasoning_is_verified():
    """The shipped model on a real epoch: measured steps, a true step 4, every step verified."""
    from eegvlm_desktop.core.picture.evidence import measure_night
    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.vlm.weights import load_model
    from tests.conftest import EXAMPLE_PSG

    model, tok, _ = load_model(SHIPPED, "cpu")
    rec = read_recording(EXAMPLE_PSG)
    roles = pick_roles(rec.ch_names, rec.ch_types)
    ev = measure_night(rec, roles, [301])[0]
    ex = explain_epoch(model, tok, render_night(rec, roles, [301])[0], evidence=ev)
    assert ex.verified and ex.stage in STAGES and ex.steps[:3] == measured_steps(ev)
    assert ex.steps[3] == f"4. {rule_step(ev, ex.stage)}"
