"""The stage-only forward gives the full model's probabilities, without open_clip/transformers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.ml.vlm.stager import PIXEL_MEAN, PIXEL_STD, StageOnlyVLM, load_stager, supports
from eegvlm_desktop.ml.vlm.weights import load_model

FOLDER = Path(__file__).resolve().parents[2] / "model_weights" / "default"
pytestmark = pytest.mark.skipif(not (FOLDER / "model.safetensors").is_file(),
                                reason="the shipped model folder is absent")


def test_probabilities_equal_the_full_model() -> None:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    assert (PIXEL_MEAN, PIXEL_STD) == (tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD))
    lite, manifest = load_stager(FOLDER)
    full, _, full_manifest = load_model(FOLDER)
    assert manifest == full_manifest
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 224, 224, 3), dtype=np.uint8)
    images[:3] = np.where(rng.random((3, 224, 224, 1)) < 0.9, 255, images[:3])  # mostly white
    lp, fp = lite.stage_probs(images), full.stage_probs(images)
    # Not bitwise: the stage-only model folds BatchNorm into the convolutions, runs them
    # channels-last and computes the last LM layer for the last position only. The same
    # function in float32, summed in another order: within 1e-5 (0.001 percentage points).
    torch.testing.assert_close(lp, fp, rtol=0, atol=1e-5)
    assert torch.equal(lp.argmax(1), fp.argmax(1))


def test_the_fast_paths_change_nothing_but_rounding() -> None:
    """Each shortcut alone against the plain forward of the same weights."""
    lite, _ = load_stager(FOLDER)
    plain = StageOnlyVLM(lite.config)
    from safetensors.torch import load_file

    plain.load_state_dict(load_file(str(FOLDER / "model.safetensors")), strict=False)
    plain.eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lite.enhance.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.enhance.modules())
    x = plain.preprocess(np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3),
                                                           dtype=np.uint8))
    with torch.no_grad():
        for name, f in plain.enhance(x).items():
            torch.testing.assert_close(lite.enhance(x)[name], f, rtol=1e-5, atol=1e-5)
        emb = torch.randn(2, 40, lite.config.lm.hidden_size)
        full_lm = plain.lm.model
        pos = torch.arange(40)[None]
        freqs = pos[..., None].float() * plain.lm.inv_freq
        cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
        mask = torch.full((40, 40), torch.finfo(torch.float32).min).triu(1)[None, None]
        h = emb
        for layer in full_lm.layers:
            h = layer(h, cos, sin, mask)
        want = plain.lm.lm_head(full_lm.norm(h)[:, -1])
        torch.testing.assert_close(plain.lm.last_logits(emb), want, rtol=1e-5, atol=1e-5)


def test_unsupported_configs_and_bad_images_say_why() -> None:
    lite, _ = load_stager(FOLDER)
    with pytest.raises(ValueError, match="'images' parameter must be uint8.*float32"):
        lite.stage_probs(np.zeros((1, 224, 224, 3), dtype=np.float32))
    cfg = lite.config
    other = type(cfg).from_json(cfg.to_json())
    other.lm.arch = "llama"
    assert not supports(other)
    with pytest.raises(ValueError, match="'config' parameter.*lm.arch='llama'"):
        StageOnlyVLM(other)


def test_staging_only_engine_stages_without_the_model_libraries(tmp_path) -> None:
    """A fresh process: the engine ``eegvlm stage`` loads imports neither library."""
    from tests.conftest import write_edf

    edf = write_edf(tmp_path / "n.edf", duration_s=300.0)
    code = (
        "import sys, json\n"
        "from eegvlm_desktop.core.recording.recording import read_recording\n"
        "from eegvlm_desktop.ml.inference import EpochQueue, InferenceEngine\n"
        f"rec = read_recording({str(edf)!r})\n"
        f"eng = InferenceEngine.load({str(FOLDER)!r}, rec, staging_only=True)\n"
        "out = []\n"
        "eng.run(EpochQueue(range(rec.n_epochs(30.0))), lambda e, p: out.append(p))\n"
        "print(json.dumps([m for m in ('open_clip', 'transformers', 'torchvision', 'yasa',\n"
        "                               'antropy', 'numba', 'lightgbm', 'sklearn')\n"
        "                  if m in sys.modules]))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_staging_only_engine_refuses_to_explain(tmp_path) -> None:
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.inference import InferenceEngine
    from tests.conftest import write_edf

    rec = read_recording(write_edf(tmp_path / "n.edf", duration_s=60.0))
    engine = InferenceEngine.load(FOLDER, rec, staging_only=True)
    with pytest.raises(EEGVLMError, match="staging only.*staging_only=False"):
        engine.explain(0)


def test_the_app_engine_stages_with_the_twin_and_explains_with_the_full_model(tmp_path) -> None:
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.inference import InferenceEngine
    from eegvlm_desktop.ml.vlm.stager import stager_from
    from tests.conftest import write_edf

    rec = read_recording(write_edf(tmp_path / "n.edf", duration_s=120.0))
    eng = InferenceEngine.load(FOLDER, rec)
    assert isinstance(eng.stager, StageOnlyVLM) and eng.stager is not eng.model
    assert eng.tokenizer is not None  # still explains
    images = eng.images(range(4))
    torch.testing.assert_close(eng.stager.stage_probs(images), eng.model.stage_probs(images),
                               rtol=0, atol=1e-5)
    # A model the twin cannot mirror stages itself, as before.
    assert stager_from(torch.nn.Linear(2, 2)) is None
