"""Per-step attention and explanations (ml/vlm/explain.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eegvlm_desktop.core.picture.cot import PROMPT as COT_PROMPT
from eegvlm_desktop.ml.vlm.explain import explain_epoch, token_lines
from eegvlm_desktop.ml.vlm.tokenizer import encode_prompt, train_tokenizer

from tests.ml.conftest import TEXTS, make_model

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
