"""`eegvlm train` then `eegvlm evaluate` end to end on a tiny recording (tiny preset, CPU)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import write_edf


def run(*args):
    return subprocess.run([sys.executable, "-m", "eegvlm_desktop", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_train_then_evaluate_flags_training_data(tmp_path):
    psg = write_edf(tmp_path / "night.edf", duration_s=600)  # 20 epochs
    hyp = tmp_path / "night.csv"
    stages = ["W"] * 4 + ["N1", "N2", "N2", "N3", "N3", "N2", "R", "R", "N2", "N2"] + ["W"] * 6
    hyp.write_text("onset,duration,stage\n" + "".join(
        f"{i * 30},30,{s}\n" for i, s in enumerate(stages)))
    out = run("train", "--data", f"{psg}:{hyp}", "--out", tmp_path / "m", "--preset", "tiny",
              "--epochs", "1", "--batch-size", "8", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "m" / "model.safetensors").exists()
    out = run("evaluate", "--model", tmp_path / "m", "--data", f"{psg}:{hyp}", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["held_out"] is False and "TRAINING DATA" in result["split"]
    assert result["eegvlm"]["n_epochs"] == result["epochs"] > 0
    assert set(result["eegvlm"]["per_stage_f1"]) == {"W", "N1", "N2", "N3", "R"}


def test_evaluate_bad_inputs_are_clear_errors(tmp_path):
    out = run("evaluate", "--model", tmp_path / "nope", "--data", "a.edf:b.csv")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = run("evaluate", "--model", tmp_path, "--data", "no-colon")
    assert out.returncode == 2 and "PSG:HYPNOGRAM" in out.stderr
