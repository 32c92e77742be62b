"""VLMConfig validation / JSON round trip and the tokenizer."""
from __future__ import annotations

import pytest

from eegvlm_desktop.ml.vlm.config import VLMConfig
from eegvlm_desktop.ml.vlm.tokenizer import (encode_example, encode_prompt, load_tokenizer,
                                             save_tokenizer, stage_token_ids)

from tests.ml.conftest import TEXTS, make_config


@pytest.mark.parametrize("name", ["tiny", "default", "fast"])
def test_presets_validate_and_round_trip(name, tokenizer):
    cfg = VLMConfig.preset(name).bind_tokenizer(tokenizer)
    cfg.validate()
    again = VLMConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.is_bound


def test_default_preset_grid_is_14():
    assert VLMConfig.preset("default").vision.grid == 14


@pytest.mark.parametrize("field,value,match", [
    ("fusion", "late", "'fusion'.*'both'.*'late'"),
    ("clip_feature_layer", 5, "'clip_feature_layer'.*5"),
    ("align_temperature", 0.0, "'align_temperature'"),
])
def test_invalid_values_name_the_parameter(field, value, match):
    cfg = VLMConfig.preset("tiny")
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def test_bad_subconfig_and_unknown_keys():
    with pytest.raises(ValueError, match="'name'.*'tiny'.*'huge'"):
        VLMConfig.preset("huge")
    cfg = VLMConfig.preset("tiny")
    cfg.enhance.layers = ["layer5"]
    with pytest.raises(ValueError, match="'enhance.layers'.*'layer5'"):
        cfg.validate()
    data = VLMConfig.preset("tiny").to_dict()
    data["colour"] = 1
    with pytest.raises(ValueError, match="colour"):
        VLMConfig.from_dict(data)


def test_stage_tokens_are_single_and_distinct(tokenizer):
    ids = stage_token_ids(tokenizer)
    assert len(set(ids)) == 5
    assert tokenizer.convert_tokens_to_ids("<image>") != tokenizer.unk_token_id


def test_unseen_characters_do_not_become_unk(tokenizer):
    ids = tokenizer.encode("Delta 0.75 Hz? [x] µV", add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == "Delta 0.75 Hz? [x] µV"


def test_encode_example_masks_prompt(tokenizer):
    ids, labels = encode_example(tokenizer, "Describe.", TEXTS[2])
    n_prompt = len(encode_prompt(tokenizer, "Describe."))
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id


def test_tokenizer_save_load_same_ids(tokenizer, tmp_path):
    save_tokenizer(tokenizer, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    text = TEXTS[3]
    assert loaded.encode(text) == tokenizer.encode(text)
    assert make_config(loaded) == make_config(tokenizer)


def test_shipped_model_folder_loads_and_matches_its_manifest():
    """model_weights/default: sha256 manifest checked, renderer version matches, 5 stages."""
    from pathlib import Path

    from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION
    from eegvlm_desktop.ml.vlm.weights import load_model

    folder = Path(__file__).resolve().parents[2] / "model_weights" / "default"
    model, tok, manifest = load_model(folder, "cpu", expected_renderer_version=RENDERER_VERSION)
    assert manifest["stages"] == ["W", "N1", "N2", "N3", "R"]
    assert manifest["card"]["metrics"]["split"].startswith("blocked 5-fold")
    assert model.config.vision.grid == 7
