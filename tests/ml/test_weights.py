"""save_model / load_model: round trip and every refusal."""
from __future__ import annotations

import json

import pytest
import torch

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION
from eegvlm_desktop.ml.vlm.weights import (MANIFEST_FILE, ModelFolderError, _sha256, load_model,
                                           save_model)

from tests.ml.conftest import make_model

CARD = {"name": "tiny-test", "trained_on": "random images"}


@pytest.fixture()
def saved(tokenizer, tmp_path):
    m = make_model(tokenizer, seed=1).eval()
    folder = tmp_path / "model"
    save_model(m, tokenizer, folder, CARD)
    return m, folder


def test_round_trip_identical_stage_probs(saved, images):
    m, folder = saved
    loaded, tok, manifest = load_model(folder, expected_renderer_version=RENDERER_VERSION)
    assert not loaded.training
    torch.testing.assert_close(loaded.stage_probs(images[:3]), m.stage_probs(images[:3]),
                               rtol=0, atol=0)
    assert manifest["card"] == CARD
    assert manifest["stages"] == ["W", "N1", "N2", "N3", "R"]
    assert manifest["n_parameters"] == m.n_parameters()
    assert {"model.safetensors", "config.json", "tokenizer/tokenizer.json"} <= set(
        manifest["files"])
    assert len(tok) == loaded.config.lm.vocab_size


def test_error_is_an_eegvlm_error():
    assert issubclass(ModelFolderError, EEGVLMError)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_corrupted_weights(saved):
    _, folder = saved
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="model.safetensors.*corrupted"):
        load_model(folder)


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer/tokenizer.json",
                                  MANIFEST_FILE])
def test_missing_file(saved, name):
    _, folder = saved
    (folder / name).unlink()
    with pytest.raises(ModelFolderError, match=str(folder)):
        load_model(folder)


def test_wrong_renderer_version(saved):
    _, folder = saved
    with pytest.raises(ModelFolderError, match=f"renderer version '{RENDERER_VERSION}'.*'0'"):
        load_model(folder, expected_renderer_version="0")


def _rewrite_config(folder, edit) -> None:
    """Edit config.json and re-sign it, so only the later checks can catch the problem."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"]["config.json"] = _sha256(path)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_shape_mismatch(saved):
    _, folder = saved
    _rewrite_config(folder, lambda c: c["lm"].update(intermediate_size=96))
    with pytest.raises(ModelFolderError, match="do not fit its config.json"):
        load_model(folder)


def test_invalid_config(saved):
    _, folder = saved
    _rewrite_config(folder, lambda c: c.update(fusion="late"))
    with pytest.raises(ModelFolderError, match="not a valid model config.*'fusion'"):
        load_model(folder)


def test_night_context_saved_checked_and_added_later(tokenizer, tmp_path):
    from eegvlm_desktop.core.staging.sequence import StageSequenceModel
    from eegvlm_desktop.ml.vlm.weights import read_sequence, write_sequence

    seq = StageSequenceModel.fit(["W", "W", "N1", "N2", "N2", "N3", "R"], source="t")
    m = make_model(tokenizer, seed=1).eval()
    save_model(m, tokenizer, tmp_path / "a", CARD, seq)
    _, _, manifest = load_model(tmp_path / "a")
    got = read_sequence(manifest)
    assert got is not None and got.source == "t"
    torch.testing.assert_close(torch.tensor(got.transitions), torch.tensor(seq.transitions),
                               rtol=0, atol=1e-6)
    save_model(m, tokenizer, tmp_path / "b", CARD)  # an older folder: no context
    _, _, manifest = load_model(tmp_path / "b")
    assert read_sequence(manifest) is None
    write_sequence(tmp_path / "b", seq)  # added afterwards: weights and checksums untouched
    _, _, manifest = load_model(tmp_path / "b")
    assert read_sequence(manifest).n_transitions == seq.n_transitions
    path = tmp_path / "b" / MANIFEST_FILE
    broken = json.loads(path.read_text())
    broken["sequence"]["transitions"] = [[1.0]]
    path.write_text(json.dumps(broken))
    with pytest.raises(ModelFolderError, match="night-context.*'transitions'"):
        load_model(tmp_path / "b")
