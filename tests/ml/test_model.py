"""EEGVLM: shapes, losses, fast path, determinism, ablations, overfit, generation, attention."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eegvlm_desktop.ml.vlm.tokenizer import encode_prompt

from tests.ml.conftest import PROMPT, make_model


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_model(tokenizer).eval()


def test_forward_shapes_and_finite_losses(tokenizer, images, batch):
    m = make_model(tokenizer)
    ids, mask, labels, stages = batch
    out = m(images[:4], ids[:4], mask[:4], labels[:4], stages[:4])
    assert out.logits.shape == (4, m.n_image_tokens + ids.shape[1], len(tokenizer))
    assert m.n_image_tokens == 2 + 7 * 7  # 2 high-level (layer3, layer4) + 7x7 patches
    for loss in (out.loss, out.lm_loss, out.align_loss, out.direct_loss):
        assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    out.loss.backward()
    assert all(p.grad is not None for p in m.high_proj.parameters())


def test_stage_probs_rows_sum_to_one(model, images):
    p = model.stage_probs(images[:3])
    assert p.shape == (3, 5)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(3))
    single = model.stage_probs(images[0])  # one HxWx3 image works too
    torch.testing.assert_close(single, p[:1], rtol=1e-4, atol=1e-5)


def test_bad_image_input_names_the_parameter(model):
    with pytest.raises(ValueError, match="'images'.*224.*float32"):
        model.stage_probs(np.zeros((2, 224, 224, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="'images'.*\\(2, 100, 100, 3\\)"):
        model.stage_probs(np.zeros((2, 100, 100, 3), dtype=np.uint8))


def test_same_seed_same_outputs(tokenizer, images):
    a = make_model(tokenizer, seed=3).eval().stage_probs(images[:2])
    b = make_model(tokenizer, seed=3).eval().stage_probs(images[:2])
    c = make_model(tokenizer, seed=4).eval().stage_probs(images[:2])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("fusion,n_tokens", [("clip", 49), ("enhance", 2), ("both", 51)])
def test_ablations_run(tokenizer, images, batch, fusion, n_tokens):
    m = make_model(tokenizer, fusion)
    assert m.n_image_tokens == n_tokens
    assert (m.visual is None) == (fusion == "enhance")
    assert (m.enhance is None) == (fusion == "clip")
    ids, mask, labels, stages = batch
    out = m(images[:2], ids[:2], mask[:2], labels[:2], stages[:2])
    assert torch.isfinite(out.loss)
    assert (out.align_loss == 0) == (fusion != "both")
    assert m.eval().stage_probs(images[:2]).shape == (2, 5)


def test_overfit_eight_examples(tokenizer, images, batch):
    m = make_model(tokenizer)
    ids, mask, labels, stages = batch
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = m(images, ids, mask, labels, stages)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def _force_next_token(m, token_id: int) -> None:
    """Replace the LM head so that greedy decoding always picks ``token_id``."""
    old = m.lm.lm_head
    head = nn.Linear(old.in_features, old.out_features, bias=True)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    head.bias.data[token_id] = 1.0
    m.lm.lm_head = head


def test_generation_stops_on_eos(tokenizer, images):
    m = make_model(tokenizer).eval()
    _force_next_token(m, tokenizer.eos_token_id)
    seen: list[int] = []
    r = m.generate_reasoning(images[0], encode_prompt(tokenizer, PROMPT), 10, on_token=seen.append)
    assert r.stop_reason == "eos" and r.token_ids == [] and seen == []


def test_generation_stops_at_max_tokens_and_calls_back(tokenizer, images):
    m = make_model(tokenizer).eval()
    target = tokenizer.convert_tokens_to_ids("▁Stage")
    _force_next_token(m, target)
    seen: list[int] = []
    r = m.generate_reasoning(images[0], encode_prompt(tokenizer, PROMPT), 6, on_token=seen.append)
    assert r.stop_reason == "max_tokens"
    assert r.token_ids == seen == [target] * 6


def test_generation_honours_should_stop(model, tokenizer, images):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 4

    r = model.generate_reasoning(images[0], encode_prompt(tokenizer, PROMPT), 50,
                                 should_stop=should_stop)
    assert r.stop_reason == "cancelled" and len(r.token_ids) <= 3
    r = model.generate_reasoning(images[0], encode_prompt(tokenizer, PROMPT), 50,
                                 should_stop=lambda: True)
    assert r == type(r)([], "cancelled")


def test_generation_matches_full_forward(model, tokenizer, images):
    """The KV-cached greedy path picks the same tokens as re-running the whole sequence."""
    prompt = encode_prompt(tokenizer, PROMPT)
    r = model.generate_reasoning(images[0], prompt, 5)
    ids = list(prompt)
    with torch.no_grad():
        tokens, _ = model.encode_images(images[0])
        for _ in range(len(r.token_ids)):
            embeds, mask = model._stream(tokens, torch.tensor(ids))
            ids.append(int(model.lm(inputs_embeds=embeds, attention_mask=mask).logits[0, -1]
                           .argmax()))
    assert ids[len(prompt):] == r.token_ids


def test_attention_maps_shape_and_image_dependence(model, tokenizer, images):
    prompt = encode_prompt(tokenizer, PROMPT)
    answer = tokenizer.encode(" Alpha waves. Stage: W", add_special_tokens=False)
    a = model.attention_maps(images[0], prompt, answer)
    assert a.shape == (len(answer), 7, 7)
    assert torch.all(a >= 0) and torch.all(a.sum(dim=(1, 2)) <= 1 + 1e-5)
    b = model.attention_maps(images[1], prompt, answer)
    assert not torch.allclose(a, b)
    last = model.attention_maps(images[0], prompt, layers=[-1])
    assert last.shape == (1, 7, 7)


def test_attention_maps_need_clip_tokens(tokenizer, images):
    m = make_model(tokenizer, "enhance").eval()
    with pytest.raises(ValueError, match="fusion='enhance'"):
        m.attention_maps(images[0], encode_prompt(tokenizer, PROMPT))


def _allowed_by(endings):
    def allowed(tokens):
        n = len(tokens)
        return list(dict.fromkeys(e[n] for e in endings if len(e) > n and e[:n] == tokens))
    return allowed


def test_constrained_generation_matches_a_full_forward_reference(model, tokenizer, images):
    """Constrained greedy decoding: forced runs skip forwards, yet every choice is the argmax
    among the allowed tokens of a full (uncached) forward over everything before it."""
    prompt = encode_prompt(tokenizer, PROMPT)
    eos = tokenizer.eos_token_id
    # Branch points at the first token, after a forced run of three, and at the end.
    endings = [[10, 11, 12, 20, 30, eos], [10, 11, 12, 21, eos], [10, 11, 12, 20, 31, 32, eos],
               [40, 41, eos]]
    allowed = _allowed_by(endings)
    seen: list[int] = []
    r = model.generate_reasoning(images[0], prompt, 10, on_token=seen.append, allowed=allowed)
    assert r.stop_reason == "eos" and r.token_ids + [eos] in endings and seen == r.token_ids
    ref: list[int] = []
    with torch.no_grad():
        tokens, _ = model.encode_images(images[0])
        while True:
            choices = allowed(ref)
            if len(choices) == 1:
                nxt = choices[0]
            else:
                embeds, mask = model._stream(tokens, torch.tensor(list(prompt) + ref))
                logits = model.lm(inputs_embeds=embeds, attention_mask=mask).logits[0, -1]
                nxt = max(choices, key=lambda t: float(logits[t]))
            if nxt == eos:
                break
            ref.append(nxt)
    assert r.token_ids == ref
    # Nothing allowed ends the text; the free path is unchanged by the new argument.
    assert model.generate_reasoning(images[0], prompt, 5, allowed=lambda t: []).token_ids == []
    assert (model.generate_reasoning(images[0], prompt, 5, allowed=None).token_ids
            == model.generate_reasoning(images[0], prompt, 5).token_ids)
