"""new_model with an open_clip ViT checkpoint and a pretrained LM (full and LoRA), offline.

Stand-ins for the paper-scale parts are built here and saved to tmp_path: a tiny open_clip ViT
architecture registered with ``open_clip.add_model_config`` (its whole-CLIP state dict saved as
.safetensors), and a tiny Qwen2 saved with ``save_pretrained`` beside a byte-level BPE tokenizer
that, like Qwen2's, has no BOS and splits 'N1' into 'ĠN' '1'.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.ml.vlm.config import VLMConfig
from eegvlm_desktop.ml.vlm.factory import new_model
from eegvlm_desktop.ml.vlm.pretrained import PretrainedError, vit_archs
from eegvlm_desktop.ml.vlm.tokenizer import (encode_example, encode_prompt, pad_batch,
                                             stage_token_ids)
from eegvlm_desktop.ml.vlm.weights import (MANIFEST_FILE, ModelFolderError, _sha256, load_model,
                                           save_model)

from tests.ml.conftest import PROMPT, TEXTS

CORPUS = TEXTS + [PROMPT]
VIT = "EEGVLM-test-ViT"  # registered by the vit_arch fixture
VIT_WIDE = "EEGVLM-test-ViT-wide"  # same layout, another width: its checkpoint must not fit


def _clip_config(width: int) -> dict:
    return {"embed_dim": 16,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": width, "patch_size": 32,
                           "head_width": 16},
            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                         "layers": 1}}


@pytest.fixture(scope="module")
def vit_arch(tmp_path_factory):
    """Register two tiny open_clip ViT architectures (the registry is process-wide)."""
    folder = tmp_path_factory.mktemp("open_clip_configs")
    for name, width in ((VIT, 32), (VIT_WIDE, 48)):
        (folder / f"{name}.json").write_text(json.dumps(_clip_config(width)))
    open_clip.add_model_config(folder)
    return VIT


@pytest.fixture(scope="module")
def vit_checkpoint(vit_arch, tmp_path_factory):
    """A whole-CLIP state dict of the tiny arch, as open_clip saves it, in .safetensors."""
    torch.manual_seed(7)
    clip = open_clip.create_model(vit_arch)
    path = tmp_path_factory.mktemp("ckpt") / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    return path


def _byte_level_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def lm_source(tmp_path_factory):
    """A tiny Qwen2 folder: tied embeddings and rows padded past the tokenizer, like Qwen2's."""
    folder = tmp_path_factory.mktemp("qwen2")
    tok = _byte_level_tokenizer()
    assert len(tok.encode(" N1", add_special_tokens=False)) > 1  # the add-tokens path runs
    torch.manual_seed(3)
    cfg = Qwen2Config(vocab_size=320, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture()
def lm_folder(lm_source, tmp_path):
    """A private copy, so a test can delete it before loading the saved model."""
    return shutil.copytree(lm_source, tmp_path / "lm")


def _batch(tok, n: int = 4):
    ex = [encode_example(tok, PROMPT, TEXTS[i % len(TEXTS)]) for i in range(n)]
    ids, mask = pad_batch([e[0] for e in ex], int(tok.pad_token_id))
    labels, _ = pad_batch([e[1] for e in ex], -100)
    return (torch.tensor(ids), torch.tensor(mask), torch.tensor(labels),
            torch.arange(n) % 5)


def _train_step(model, tok, images) -> None:
    ids, mask, labels, stages = _batch(tok)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(images[:4], ids, mask, labels, stages)
    opt.zero_grad()
    out.loss.backward()
    opt.step()


# ----------------------------------------------------------------- vision
def test_named_vit_from_checkpoint_saves_and_loads_without_it(vit_arch, vit_checkpoint, images,
                                                              tmp_path):
    ckpt = shutil.copy(vit_checkpoint, tmp_path / "clip.safetensors")
    model, tok = new_model("tiny", "both", CORPUS, vision_arch=vit_arch, vision_checkpoint=ckpt)
    v = model.config.vision
    assert (v.arch, v.width, v.layers, v.heads, v.grid) == (vit_arch, 32, 2, 2, 7)
    assert v.checkpoint == str(ckpt.resolve())
    source = load_file(str(vit_checkpoint))
    visual = model.visual.state_dict()  # pruned after block 0 (clip_feature_layer=-2)
    assert "transformer.resblocks.0.attn.in_proj_weight" in visual
    for key, value in visual.items():
        torch.testing.assert_close(value, source[f"visual.{key}"], rtol=0, atol=0)

    ids, mask, labels, stages = _batch(tok)
    out = model(images[:4], ids, mask, labels, stages)
    out.loss.backward()
    assert model.visual.conv1.weight.grad is not None
    model.eval()
    probs = model.stage_probs(images[:2])
    assert probs.shape == (2, 5)
    assert model.attention_maps(images[0], encode_prompt(tok, PROMPT)).shape == (1, 7, 7)

    save_model(model, tok, tmp_path / "model", {"name": "vit-test"})
    ckpt.unlink()
    loaded, _, _ = load_model(tmp_path / "model")
    assert loaded.config.vision == v
    torch.testing.assert_close(loaded.stage_probs(images[:2]), probs, rtol=0, atol=0)


def test_named_vit_without_checkpoint_is_random_and_geometry_follows_arch(vit_arch):
    model, _ = new_model("tiny", "clip", CORPUS, vision_arch=vit_arch)
    assert model.config.vision.checkpoint == "" and model.n_patches == 49
    assert model.visual.conv1.weight.shape == (32, 3, 32, 32)


def test_vit_archs_are_224_px_vits():
    names = vit_archs()
    assert {"ViT-B-16", "ViT-L-14", "ViT-B-32"} <= set(names)
    assert not {"RN50", "ViT-L-14-336", "convnext_tiny", "roberta-ViT-B-32"} & set(names)


@pytest.mark.parametrize("arch,match", [
    ("ViT-Nope", "'vision.arch'.*no architecture.*'custom'.*'ViT-B-16'.*got 'ViT-Nope'"),
    ("RN50", "'vision.arch'.*ModifiedResNet.*got 'RN50'"),
    ("convnext_tiny", "'vision.arch'.*timm.*got 'convnext_tiny'"),
    ("ViT-L-14-336", "'vision.arch'.*336-px.*224.*got 'ViT-L-14-336'"),
])
def test_unusable_arch_is_a_clear_error(arch, match):
    with pytest.raises(PretrainedError, match=match) as info:
        new_model("tiny", "both", CORPUS, vision_arch=arch)
    assert isinstance(info.value, EEGVLMError) and isinstance(info.value, ValueError)


def test_checkpoint_errors(vit_arch, vit_checkpoint, tmp_path):
    with pytest.raises(PretrainedError, match="'vision.checkpoint'.*nope.safetensors.*does not "
                                              "exist"):
        new_model("tiny", "both", CORPUS, vision_arch=vit_arch,
                  vision_checkpoint=str(tmp_path / "nope.safetensors"))
    bad_kind = tmp_path / "weights.npz"
    bad_kind.write_bytes(b"0")
    with pytest.raises(PretrainedError, match="allowed kinds.*'.npz'"):
        new_model("tiny", "both", CORPUS, vision_arch=vit_arch, vision_checkpoint=bad_kind)
    with pytest.raises(PretrainedError, match="does not fit open_clip architecture "
                                              f"'{VIT_WIDE}'.*size mismatch"):
        new_model("tiny", "both", CORPUS, vision_arch=VIT_WIDE,
                  vision_checkpoint=str(vit_checkpoint))
    with pytest.raises(PretrainedError, match="'vision_checkpoint'.*needs 'vision_arch'"):
        new_model("tiny", "both", CORPUS, vision_checkpoint=str(vit_checkpoint))


def test_folder_with_arch_unknown_to_open_clip_is_refused(vit_arch, tmp_path):
    model, tok = new_model("tiny", "both", CORPUS, vision_arch=vit_arch)
    folder = tmp_path / "model"
    save_model(model, tok, folder, {})
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data["vision"]["arch"] = "ViT-Gone"
    path.write_text(json.dumps(data))
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"]["config.json"] = _sha256(path)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="cannot be rebuilt.*'vision.arch'.*'ViT-Gone'"):
        load_model(folder)


def test_configs_written_before_the_new_fields_still_load():
    data = VLMConfig.preset("tiny").to_dict()
    for key in ("arch", "checkpoint"):
        del data["vision"][key]
    for key in ("pretrained", "lora", "hf_config"):
        del data["lm"][key]
    cfg = VLMConfig.from_dict(data)
    assert cfg.vision.arch == "custom" and cfg.lm.pretrained == "" and cfg.lm.lora == {}


# ----------------------------------------------------------------- language model
def test_pretrained_lm_full_fine_tuning_round_trip(lm_folder, images, tmp_path):
    model, tok = new_model("tiny", "both", [], lm_pretrained=str(lm_folder))
    lm = model.config.lm
    assert (lm.arch, lm.hidden_size, lm.layers, lm.vocab_size) == ("qwen2", 32, 2, 320)
    assert lm.pretrained == str(lm_folder.resolve()) and lm.hf_config["tie_word_embeddings"]
    # Stage names became single added tokens (with their space); BOS and pad fell back to EOS.
    assert tok.convert_ids_to_tokens(stage_token_ids(tok))[1:4] == [" N1", " N2", " N3"]
    assert tok.decode(tok.encode(" Stage: N1.", add_special_tokens=False)) == " Stage: N1."
    assert tok.bos_token == tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert all(p.requires_grad for p in model.parameters())
    _train_step(model, tok, images)
    model.eval()
    probs = model.stage_probs(images[:2])
    maps = model.attention_maps(images[0], encode_prompt(tok, PROMPT))
    assert maps.shape == (1, 7, 7)

    save_model(model, tok, tmp_path / "model", {})
    shutil.rmtree(lm_folder)
    loaded, loaded_tok, manifest = load_model(tmp_path / "model")
    assert loaded_tok.encode(TEXTS[1]) == tok.encode(TEXTS[1])
    assert manifest["n_parameters"] == loaded.n_parameters() == model.n_parameters()
    # Tied embeddings are stored once and tied again on load.
    assert loaded.lm.lm_head.weight is loaded.lm.model.embed_tokens.weight
    torch.testing.assert_close(loaded.stage_probs(images[:2]), probs, rtol=0, atol=0)
    torch.testing.assert_close(loaded.attention_maps(images[0], encode_prompt(tok, PROMPT)),
                               maps, rtol=0, atol=0)


def test_pretrained_lm_lora_trains_adapters_only_and_saves_merged(lm_folder, images, tmp_path):
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    model, tok = new_model("tiny", "both", [], lm_pretrained=str(lm_folder), lora=lora)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora_names = {n for n in trainable if ".lora_" in n}
    assert len(lora_names) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    assert trainable - lora_names == {n for n, _ in model.named_parameters()
                                      if not n.startswith("lm.")}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_step(model, tok, images)
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in lora_names if ".lora_B." in n)
    frozen = [n for n in before if n.startswith("lm.") and n not in lora_names]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)

    model.eval()
    probs = model.stage_probs(images[:2])
    save_model(model, tok, tmp_path / "model", {})
    shutil.rmtree(lm_folder)
    loaded, _, manifest = load_model(tmp_path / "model")
    assert not any("lora" in k or "base_layer" in k for k in loaded.state_dict())
    assert not any(type(m).__module__.startswith("peft") for m in loaded.modules())
    assert manifest["n_parameters"] == loaded.n_parameters()
    # Merged W + BA against W x + B(A x): equal up to float rounding.
    torch.testing.assert_close(loaded.stage_probs(images[:2]), probs, rtol=1e-4, atol=1e-5)


def test_loading_a_lora_model_folder_does_not_import_peft(lm_folder, tmp_path):
    model, tok = new_model("tiny", "clip", [], lm_pretrained=str(lm_folder), lora={"r": 4})
    save_model(model, tok, tmp_path / "model", {})
    code = ("import sys; from eegvlm_desktop.ml.vlm.weights import load_model; "
            f"load_model({str(tmp_path / 'model')!r}); assert 'peft' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_lm_errors(lm_folder, tmp_path):
    with pytest.raises(PretrainedError, match="'lm_pretrained'.*does not exist") as info:
        new_model("tiny", "both", CORPUS, lm_pretrained=str(tmp_path / "no-lm"))
    assert isinstance(info.value, EEGVLMError)
    with pytest.raises(PretrainedError, match="'lora' parameter needs 'lm_pretrained'"):
        new_model("tiny", "both", CORPUS, lora={"r": 4})
    with pytest.raises(ValueError, match="Unknown 'lm.lora' keys \\['use_dora'\\]"):
        new_model("tiny", "both", [], lm_pretrained=str(lm_folder), lora={"use_dora": True})
    with pytest.raises(PretrainedError, match="'lora'.*cannot be applied.*nothing_here"):
        new_model("tiny", "both", [], lm_pretrained=str(lm_folder),
                  lora={"r": 4, "target_modules": ["nothing_here"]})


# ----------------------------------------------------------------- through train()
def test_train_uses_pretrained_parts_and_keeps_the_frozen_lm(lm_folder, vit_arch,
                                                             vit_checkpoint):
    """TrainSettings' pretrained options go through factory.new_model (what the CLI uses)."""
    from eegvlm_desktop.ml.training import TrainSettings, train

    from tests.ml.test_training import fake_night

    data = fake_night(n=6)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(lm_folder), local_files_only=True,
                                                dtype=torch.float32).state_dict()
    settings = TrainSettings(preset="tiny", epochs=1, batch_size=3, balance=False,
                             vision_arch=vit_arch, vision_checkpoint=str(vit_checkpoint),
                             lm_pretrained=str(lm_folder), lora={"r": 4})
    model, tok, history = train(data, settings, "cpu")
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    assert model.config.vision.arch == vit_arch and model.config.lm.lora == {"r": 4}
    lm_state = {k.replace("base_layer.", ""): v for k, v in model.lm.state_dict().items()
                if "lora_" not in k}
    # LoRA: every base weight of the LM is exactly the pretrained one after training.
    for k, v in base.items():
        if k in lm_state and lm_state[k].shape == v.shape:
            torch.testing.assert_close(lm_state[k], v, rtol=0, atol=0)
    assert any(p.requires_grad for n, p in model.lm.named_parameters() if "lora_" in n)
