"""`eegvlm train` then `eegvlm evaluate` end to end on a tiny recording (tiny preset, CPU)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eegvlm_desktop.cli import main
from eegvlm_desktop.ml.training import TrainSettings
from tests.conftest import write_broken_edf, write_edf

STAGES = ["W"] * 4 + ["N1", "N2", "N2", "N3", "N3", "N2", "R", "R", "N2", "N2"] + ["W"] * 6


def run(*args):
    return subprocess.run([sys.executable, "-m", "eegvlm_desktop", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def cli(capsys, *args):
    """The CLI in this process (no 6-s import per call): ``(exit code, stdout, stderr)``."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def scored_night(psg, hyp):
    """A 20-epoch recording and its hypnogram (CSV)."""
    write_edf(psg, duration_s=600)
    hyp.write_text("onset,duration,stage\n" + "".join(
        f"{i * 30},30,{s}\n" for i, s in enumerate(STAGES)))
    return psg, hyp


def test_train_then_evaluate_flags_training_data(tmp_path):
    psg, hyp = scored_night(tmp_path / "night.edf", tmp_path / "night.csv")
    out = run("train", "--data", f"{psg}:{hyp}", "--out", tmp_path / "m", "--preset", "tiny",
              "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "m" / "model.safetensors").exists()
    rows = [json.loads(line) for line in out.stdout.splitlines()]  # pure JSON lines
    assert rows[-1]["final"]["epoch"] == 1 and "step/s" not in out.stderr
    out = run("evaluate", "--model", tmp_path / "m", "--data", f"{psg}:{hyp}", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["held_out"] is False and "TRAINING DATA" in result["split"]
    assert result["eegvlm"]["n_epochs"] == result["epochs"] > 0
    assert set(result["eegvlm"]["per_stage_f1"]) == {"W", "N1", "N2", "N3", "R"}
    # The trained folder carries its night context, counted from the training hypnogram.
    seq = json.loads((tmp_path / "m" / "MANIFEST.json").read_text())["sequence"]
    assert seq["n_transitions"] == len(STAGES) - 1 and "training epochs" in seq["source"]
    assert result["eegvlm_context"]["n_epochs"] == result["eegvlm"]["n_epochs"]


def test_evaluate_bad_inputs_are_clear_errors(tmp_path):
    out = run("evaluate", "--model", tmp_path / "nope", "--data", "a.edf:b.csv")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = run("evaluate", "--model", tmp_path, "--data", "no-colon")
    assert out.returncode == 2 and "PSG:HYPNOGRAM" in out.stderr


def test_train_on_folder_checkpoints_then_resumes(tmp_path, capsys):
    folder = tmp_path / "nights"
    folder.mkdir()
    scored_night(folder / "night.edf", folder / "night-Hypnogram.csv")
    write_edf(folder / "unscored.edf", duration_s=60)  # no hypnogram beside it: skipped
    out = tmp_path / "models" / "m"
    args = ["train", "--data", folder, "--out", out, "--preset", "tiny", "--batch-size", "10",
            "--device", "cpu"]
    code, stdout, stderr = cli(capsys, *args, "--epochs", "1", "--no-progress")
    assert code == 0, stderr
    final = [json.loads(line) for line in stdout.splitlines()][-1]
    assert final["recordings"] == 1 and final["examples"] == 20
    assert final["resumed_from_epoch"] == 0 and "step/s" not in stderr
    assert final["checkpoint_dir"] == str(tmp_path / "models" / "m.checkpoints")
    assert (tmp_path / "models" / "m.checkpoints" / "checkpoint.json").is_file()
    # A second epoch on top of the checkpoint, progress bar on: stdout is still JSON only.
    code, stdout, stderr = cli(capsys, *args, "--epochs", "2", "--resume")
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["epoch"] for r in rows[:-1]] == [2]  # only the resumed epoch was logged
    assert rows[-1]["resumed_from_epoch"] == 1 and rows[-1]["final"]["epoch"] == 2
    assert "resuming after epoch 1" in stderr and "4/4" in stderr and "loss=" in stderr
    card = json.loads((out / "MANIFEST.json").read_text())["card"]
    assert len(card["training"]["history"]) == 2
    assert card["training"]["resumed_from_epoch"] == 1


def test_train_folder_without_pairs_is_a_clear_error(tmp_path, capsys):
    write_edf(tmp_path / "lonely.edf", duration_s=60)
    code, _, stderr = cli(capsys, "train", "--data", tmp_path, "--out", tmp_path / "m")
    assert code == 2 and "no recording with a matching hypnogram" in stderr
    assert "lonely.edf" in stderr and "NAME-Hypnogram" in stderr


def fake_model_folder(folder, **settings):
    """Enough of a model folder for --cv, which only reads the card's training settings."""
    folder.mkdir()
    card = {"training": {"settings": TrainSettings(preset="tiny", **settings).to_dict()}}
    (folder / "MANIFEST.json").write_text(json.dumps({"format": 1, "files": {}, "card": card}))
    return folder


def test_evaluate_cv_selected_folds_json(tmp_path, capsys):
    psg, hyp = scored_night(tmp_path / "night.edf", tmp_path / "night.csv")
    model = fake_model_folder(tmp_path / "m", epochs=1, batch_size=16)  # 1 step per fold
    base = ["evaluate", "--model", model, "--data", f"{psg}:{hyp}", "--device", "cpu"]
    code, stdout, stderr = cli(capsys, *base, "--cv", "blocks:4", "--folds", "2,0")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["k"] == 4 and result["folds"] == [0, 2]
    assert "ONLY folds 0, 2 of 4" in result["split"]
    assert result["settings_differ_from_card"] is False
    assert result["training_settings"]["epochs"] == 1
    per = result["per_fold"]
    assert [p["fold"] for p in per] == [0, 2] and [p["epochs"] for p in per] == [5, 5]
    assert (per[0]["first_epoch"], per[1]["first_epoch"]) == (0, 10)
    assert result["eegvlm"]["n_epochs"] == 10 == sum(p["eegvlm"]["n_epochs"] for p in per)
    assert "step/s" in stderr and "fold=2" in stderr  # the bar, on stderr only
    # Calibrated night context: each fold's temperature from the other fold's answers only.
    assert set(result["calibration"]["temperatures"]) == {"0", "2"}
    assert all(0.25 <= t <= 20 for t in result["calibration"]["temperatures"].values())
    assert result["eegvlm_context_calibrated"]["n_epochs"] == 10
    assert all("eegvlm_context_calibrated" in p for p in per)
    # All folds, with the --epochs override loudly marked, and no bar.
    code, stdout, stderr = cli(capsys, *base, "--cv", "blocks:2", "--epochs", "2",
                               "--no-progress")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["folds"] == [0, 1] and "all 2 folds ran" in result["split"]
    assert result["settings_differ_from_card"] is True
    assert result["training_settings"]["epochs"] == 2
    assert len(result["per_fold"]) == 2 and result["eegvlm"]["n_epochs"] == 20
    assert "step/s" not in stderr
    # Reasoning on held-out epochs of each fold, compared with the direct answer.
    code, stdout, stderr = cli(capsys, *base, "--cv", "blocks:2", "--folds", "1",
                               "--reasoning", "2", "--no-progress", "--save-models",
                               tmp_path / "cv")
    assert code == 0, stderr
    from eegvlm_desktop.ml.vlm.weights import load_model

    _, _, saved = load_model(tmp_path / "cv" / "fold1")  # the fold's model, kept
    assert saved["card"]["training_data"]["held_out_block"]["first_epoch"] == 10
    # Its night context counts only the training block (epochs 0-9: 9 transitions).
    assert saved["sequence"]["n_transitions"] == 9
    trained = json.loads(stdout)
    rv = trained["reasoning_vs_direct"]
    assert rv["epochs"] == 2 and 0 <= rv["agree"] <= 2 and 0 <= rv["no_stage"] <= 2
    assert 0 <= rv["reasoned_accuracy"] <= 1 and 0 <= rv["direct_accuracy"] <= 1


def test_evaluate_bad_folds_are_clear_errors(tmp_path, capsys):
    psg, hyp = scored_night(tmp_path / "night.edf", tmp_path / "night.csv")
    model = fake_model_folder(tmp_path / "m")
    base = ["evaluate", "--model", model, "--data", f"{psg}:{hyp}", "--device", "cpu"]
    for extra, message in ((["--cv", "blocks:4", "--folds", "0,4"], "from 0 to 3"),
                           (["--cv", "blocks:4", "--folds", "1,1"], "distinct"),
                           (["--cv", "blocks:99"], "from 2 to the night's 20"),
                           (["--folds", "0"], "--folds only applies"),
                           (["--augment", "1"], "--augment only applies"),
                           (["--cv", "blocks:2", "--resume"], "add --save-models")):
        code, _, stderr = cli(capsys, *base, *extra)
        assert code == 2 and message in stderr, (extra, stderr)


def test_evaluate_cv_reuses_saved_fold_models(tmp_path, capsys):
    psg, hyp = scored_night(tmp_path / "night.edf", tmp_path / "night.csv")
    model = fake_model_folder(tmp_path / "m", epochs=1, batch_size=16)
    base = ["evaluate", "--model", model, "--data", f"{psg}:{hyp}", "--device", "cpu",
            "--cv", "blocks:2", "--no-progress"]
    code, stdout, stderr = cli(capsys, *base, "--save-models", tmp_path / "cv")
    assert code == 0, stderr
    trained = json.loads(stdout)
    assert all("eegvlm_context" in p for p in trained["per_fold"])
    # Each fold checkpointed; --resume of finished folds reloads them (same answers).
    assert (tmp_path / "cv" / "fold1.checkpoints" / "checkpoint.json").exists()
    code, stdout, stderr = cli(capsys, *base, "--save-models", tmp_path / "cv", "--resume")
    assert code == 0, stderr
    assert json.loads(stdout)["eegvlm"]["confusion"] == trained["eegvlm"]["confusion"]
    code, stdout, stderr = cli(capsys, *base, "--cv-models", tmp_path / "cv",
                               "--save-probs", tmp_path / "probs.json")
    assert code == 0, stderr
    again = json.loads(stdout)
    assert "fold models saved in" in again["split"]
    for key in ("eegvlm", "eegvlm_context"):  # the same models give the same numbers
        assert again[key]["confusion"] == trained[key]["confusion"]
    saved = json.loads((tmp_path / "probs.json").read_text())
    assert saved["epochs"] == list(range(20)) and len(saved["probs"]) == 20
    assert len(saved["context_probs"]) == 20 and saved["expert"] == STAGES
    assert len(saved["context_calibrated_probs"]) == 20
    # The reasoning check runs on the saved fold models too (held-out epochs of each block).
    code, stdout, stderr = cli(capsys, *base, "--cv-models", tmp_path / "cv", "--reasoning", "2")
    assert code == 0, stderr
    rv = json.loads(stdout)["reasoning_vs_direct"]
    assert rv["epochs"] == 4 and 0 <= rv["agree"] <= 4
    # Fold models of another split are refused, with the reason.
    code, _, stderr = cli(capsys, *base[:-3], "--cv", "blocks:4", "--folds", "1",
                          "--cv-models", tmp_path / "cv")
    assert code == 2 and "never saw" in stderr and "Traceback" not in stderr
    code, _, stderr = cli(capsys, *base, "--cv-models", tmp_path / "cv", "--epochs", "3")
    assert code == 2 and "--cv-models" in stderr
    code, _, stderr = cli(capsys, *base, "--cv-models", tmp_path / "cv", "--augment", "1")
    assert code == 2 and "--augment" in stderr


def test_train_and_cv_with_augmentation_record_it(tmp_path, capsys):
    psg, hyp = scored_night(tmp_path / "night.edf", tmp_path / "night.csv")
    code, _, stderr = cli(capsys, "train", "--data", f"{psg}:{hyp}", "--out", tmp_path / "m",
                          "--preset", "tiny", "--epochs", "1", "--batch-size", "16",
                          "--augment", "2", "--device", "cpu", "--no-progress")
    assert code == 0, stderr
    card = json.loads((tmp_path / "m" / "MANIFEST.json").read_text())["card"]
    assert card["training"]["settings"]["augment"] == 2
    from eegvlm_desktop.core.picture.augment import AUGMENT_VERSION

    assert card["training_data"]["variants"] == {"per_example": 2, "seed": 0,
                                                 "augment_version": AUGMENT_VERSION}
    # A CV of that recipe trains its folds with variants too; an override is marked.
    base = ["evaluate", "--model", tmp_path / "m", "--data", f"{psg}:{hyp}", "--device", "cpu",
            "--cv", "blocks:2", "--folds", "0", "--no-progress"]
    code, stdout, stderr = cli(capsys, *base)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["training_settings"]["augment"] == 2
    assert result["settings_differ_from_card"] is False
    code, stdout, stderr = cli(capsys, *base, "--augment", "0")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["training_settings"]["augment"] == 0
    assert result["settings_differ_from_card"] is True


def test_stage_takes_the_threads_it_is_given(tmp_path, capsys):
    from eegvlm_desktop.ml.inference import threads, use_threads

    psg = write_edf(tmp_path / "n.edf", duration_s=300)
    before = threads()
    try:
        code, stdout, stderr = cli(capsys, "stage", psg, tmp_path / "o.csv", "--device", "cpu",
                                   "--threads", "1")
        assert code == 0, stderr
        assert json.loads(stdout)["threads"] == 1 and threads() == 1
    finally:
        use_threads(before)
    with pytest.raises(SystemExit):
        cli(capsys, "stage", psg, tmp_path / "o.csv", "--threads", "0")
    assert "--threads: expected a whole number >= 1, got '0'" in capsys.readouterr().err


def test_stage_writes_a_model_hypnogram_with_and_without_context(tmp_path, capsys):
    psg = write_edf(tmp_path / "unscored.edf", duration_s=600)  # 20 epochs, no labels
    code, stdout, stderr = cli(capsys, "stage", psg, tmp_path / "out.csv", "--device", "cpu")
    assert code == 0, stderr
    info = json.loads(stdout)
    # The shipped answer is pooled with the cohort stagers, whose card turns context off.
    assert info["epochs"] == 20 and info["night_context"] is False and info["model"] == "default"
    assert info["sources"] == {"vlm": 0.1204, "rsn": 0.4035, "yasa": 0.6907}
    assert info["unscorable"] == {"epochs": 0, "first": []}
    assert sum(info["stages"].values()) == 20
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0] == "onset,duration,stage,provenance" and len(rows) == 21
    assert all(r.endswith(",model") for r in rows[1:])
    assert "unscored" not in (tmp_path / "out.csv").read_text()  # de-identified
    code, stdout, stderr = cli(capsys, "stage", psg, tmp_path / "ctx.csv", "--context",
                               "--device", "cpu")
    assert code == 0, stderr
    assert json.loads(stdout)["night_context"] is True
    code, _, stderr = cli(capsys, "stage", psg, tmp_path / "ctx.csv", "--context",
                          "--no-context", "--device", "cpu")
    assert code != 0 and "contradict" in stderr
    code, stdout, stderr = cli(capsys, "stage", psg, tmp_path / "alone.json", "--no-context",
                               "--device", "cpu")
    assert code == 0, stderr
    assert json.loads(stdout)["night_context"] is False
    doc = json.loads((tmp_path / "alone.json").read_text())
    assert doc["provenance"]["night_context"] is False
    code, _, stderr = cli(capsys, "stage", psg, tmp_path / "x.csv", "--model", tmp_path / "no")
    assert code == 2 and "does not exist" in stderr
    code, _, stderr = cli(capsys, "stage", tmp_path / "missing.edf", tmp_path / "x.csv")
    assert code == 2 and "Traceback" not in stderr


@pytest.mark.parametrize("problem, words", [("flat", "is flat"), ("tiny", "implausibly small"),
                                            ("no_range", "same physical minimum and maximum")])
def test_stage_gives_no_confident_stage_for_a_signal_it_cannot_read(tmp_path, capsys, problem,
                                                                     words):
    """Flat EEG, EEG in volts labelled µV, physical min = max: every epoch unscored, and the
    JSON says why, with the file's notes (they used to be ``[]``)."""
    psg = write_broken_edf(tmp_path / f"{problem}.edf", problem)
    code, stdout, stderr = cli(capsys, "stage", psg, tmp_path / "out.csv", "--device", "cpu")
    assert code == 0, stderr
    # The last line: in-process, MNE's logger may print its header warning to stdout first.
    info = json.loads(stdout.strip().splitlines()[-1])
    assert info["stages"] == {"UNS": 20} and info["unscorable"]["epochs"] == 20
    assert info["unscorable"]["first"][0]["reason"]
    assert any("'EEG Fpz-Cz' (EEG)" in n and words in n for n in info["notes"])
    rows = (tmp_path / "out.csv").read_text().splitlines()[1:]
    assert len(rows) == 20 and all(",UNS," in r for r in rows)


def test_stage_notes_name_a_clipped_channel_and_refuse_a_short_file(tmp_path, capsys):
    psg = write_broken_edf(tmp_path / "clipped.edf", "clipped")
    code, stdout, stderr = cli(capsys, "stage", psg, tmp_path / "out.csv", "--device", "cpu")
    assert code == 0, stderr
    notes = json.loads(stdout.strip().splitlines()[-1])["notes"]
    assert any("'EEG Fpz-Cz' (EEG) is clipped" in n for n in notes)
    short = write_edf(tmp_path / "short.edf", duration_s=20)
    code, _, stderr = cli(capsys, "stage", short, tmp_path / "s.csv", "--device", "cpu")
    assert code == 2 and "shorter than one 30-s epoch" in stderr and "Traceback" not in stderr
