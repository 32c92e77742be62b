"""Fine-tuning a saved model: it learns, freezes what it should, stops, repeats, saves honestly."""
from __future__ import annotations

import inspect
import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from eegvlm_desktop import cli
from eegvlm_desktop.cli import model as cli_model
from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.picture.cot import PROMPT
from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION
from eegvlm_desktop.ml.finetune.card import save_finetuned
from eegvlm_desktop.ml.finetune.run import VISION_PARTS, finetune, fit_answers
from eegvlm_desktop.ml.finetune.settings import FinetuneError, FinetuneSettings
from eegvlm_desktop.ml.vlm.config import VLMConfig
from eegvlm_desktop.ml.vlm.model import EEGVLM
from eegvlm_desktop.ml.vlm.tokenizer import train_tokenizer
from eegvlm_desktop.ml.vlm.weights import MANIFEST_FILE, load_model, read_manifest, save_model

from tests.ml.test_pretrained import lm_source  # noqa: F401  (fixture: a tiny Qwen2 folder)
from tests.ml.test_training import fake_night

FAST = dict(batch_size=4, lr=2e-3, balance=False)


def _save_parent(model, tok, folder):
    card = {"name": folder.name, "training_data": {"recordings": ["SC4001E0-PSG.edf"]},
            "training": {"settings": {"preset": "tiny"}}}
    save_model(model, tok, folder, card)
    return folder


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """An untrained tiny model folder whose tokenizer knows fake_night's answers."""
    tok = train_tokenizer([PROMPT] + fake_night(4).answers, vocab_size=300)
    cfg = VLMConfig.preset("tiny").bind_tokenizer(tok)
    torch.manual_seed(0)
    return _save_parent(EEGVLM(cfg), tok, tmp_path_factory.mktemp("models") / "parent")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_goes_down_progress_and_log(parent):
    calls, rows = [], []
    s = FinetuneSettings(epochs=5, **FAST)
    res = finetune(parent, fake_night(8), s, "cpu", progress=lambda *a: calls.append(a),
                   log=rows.append)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert rows == res.history and [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert [c[:2] for c in calls] == [(i, 10) for i in range(1, 11)]  # 2 steps x 5 epochs
    assert not res.stopped and res.steps_done == res.total_steps == 10
    assert res.metrics_before is None and res.metrics_after is None
    assert res.data_summary["stage_counts"] == {"W": 4, "N1": 0, "N2": 0, "N3": 4, "R": 0}


def test_freeze_vision_changes_only_the_lm(parent):
    before = _state(load_model(parent)[0])
    res = finetune(parent, fake_night(8), FinetuneSettings(epochs=1, freeze_vision=True,
                                                           **FAST), "cpu")
    after = _state(res.model)
    vision = [k for k in before if k.split(".")[0] in VISION_PARTS]
    # Buffers too: the CNN's BatchNorm statistics must not move either.
    assert any("running_mean" in k for k in vision)
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("lm."))
    assert all(not p.requires_grad for n, p in res.model.named_parameters()
               if n.split(".")[0] in VISION_PARTS)


def test_lora_is_refused_for_a_preset_lm(parent):
    with pytest.raises(FinetuneError, match="'lora_r'.*built from a preset.*got lora_r=4"):
        finetune(parent, fake_night(4), FinetuneSettings(lora_r=4), "cpu")


def test_lora_on_a_pretrained_lm_trains_adapters_and_saves_merged(
        lm_source, tmp_path):  # noqa: F811
    from eegvlm_desktop.ml.vlm.factory import new_model

    model, tok = new_model("tiny", "both", [], lm_pretrained=str(lm_source))
    folder = _save_parent(model, tok, tmp_path / "qwen-parent")
    before = _state(load_model(folder)[0])
    res = finetune(folder, fake_night(4), FinetuneSettings(epochs=1, lora_r=2, **FAST), "cpu")
    lm_trainable = {n for n, p in res.model.named_parameters()
                    if p.requires_grad and n.startswith("lm.")}
    assert lm_trainable and all(".lora_" in n for n in lm_trainable)
    after = {k.replace("base_layer.", ""): v for k, v in res.model.state_dict().items()
             if ".lora_" not in k}
    lm_keys = [k for k in before if k.startswith("lm.")]
    assert all(torch.equal(before[k], after[k]) for k in lm_keys)  # the base LM is frozen
    images = fake_night(2, seed=9).images
    probs = res.model.stage_probs(images)
    save_finetuned(res, tmp_path / "ft", read_manifest(folder), {}, res.settings)
    loaded = load_model(tmp_path / "ft")[0]
    assert not any(".lora_" in k for k in loaded.state_dict())
    torch.testing.assert_close(loaded.stage_probs(images), probs, rtol=1e-4, atol=1e-5)


def test_should_stop_returns_the_partial_epoch(parent):
    calls = []
    res = finetune(parent, fake_night(12), FinetuneSettings(epochs=3, **FAST), "cpu",
                   progress=lambda *a: calls.append(a), should_stop=lambda: len(calls) >= 2)
    assert res.stopped and res.steps_done == 2 and res.total_steps == 9
    assert len(res.history) == 1 and res.history[0]["partial"] and res.history[0]["steps"] == 2
    res = finetune(parent, fake_night(4), FinetuneSettings(**FAST), "cpu",
                   should_stop=lambda: True)
    assert res.stopped and res.steps_done == 0 and res.history == [] and res.final is None


def test_seeded_runs_are_identical_with_and_without_accelerate(parent):
    data = fake_night(6, seed=3)
    s = FinetuneSettings(epochs=1, batch_size=3, lr=2e-3, seed=5)  # 2 steps
    runs = [finetune(parent, data, s, "cpu", use_accelerate=acc) for acc in (False, False, True)]
    states = [_state(r.model) for r in runs]
    assert all(torch.equal(states[0][k], other[k]) for other in states[1:] for k in states[0])
    strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in r.history]
             for r in runs]
    assert strip[0] == strip[1] == strip[2] and runs[2].num_processes == 1
    other = _state(finetune(parent, data, FinetuneSettings(epochs=1, batch_size=3, lr=2e-3,
                                                           seed=6), "cpu").model)
    assert any(not torch.equal(states[0][k], other[k]) for k in other)


def test_unencodable_characters_are_replaced_not_learnt_as_unk(parent):
    tok = load_model(parent)[1]
    fixed, fixes = fit_answers(tok, ["Spindles café ≈ 13 Hz ☃. Stage: N2"])
    assert fixes == {"é": "e", "≈": "~", "☃": ""}
    assert fixed == ["Spindles cafe ~ 13 Hz . Stage: N2"]
    assert tok.unk_token_id not in tok.encode(fixed[0])
    byte_level = types.SimpleNamespace(unk_token_id=None)
    assert fit_answers(byte_level, ["é ☃"]) == (["é ☃"], {})
    data = fake_night(4)
    data.answers[0] = data.answers[0].replace("fast", "fast ≈ ☃")
    res = finetune(parent, data, FinetuneSettings(**FAST), "cpu", should_stop=lambda: True)
    assert res.data_summary["text_fixes"] == {"≈": "~", "☃": ""}


def test_bad_settings_and_data_are_clear_errors(parent, tmp_path):
    data = fake_night(4)
    for bad, match in (({"epochs": 0}, "'epochs'.*got 0"), ({"lr": -1.0}, "'lr'.*got -1.0"),
                       ({"lora_r": -1}, "'lora_r'")):
        with pytest.raises(FinetuneError, match=match):
            finetune(parent, data, FinetuneSettings(**bad), "cpu")
    old = fake_night(4)
    old.meta["renderer_version"] = "0"
    with pytest.raises(FinetuneError,
                       match=f"renderer version '0'.*allowed.*'{RENDERER_VERSION}'"):
        finetune(parent, old, FinetuneSettings(), "cpu")
    wrong = fake_night(4)
    wrong.answers[1] = wrong.answers[1].replace("Stage: N3", "Stage: N2")
    with pytest.raises(FinetuneError, match="Example 1.*'N2'.*expert stage is 'N3'"):
        finetune(parent, wrong, FinetuneSettings(), "cpu")
    with pytest.raises(FinetuneError, match="shares 2 epoch image"):
        finetune(parent, data, FinetuneSettings(), "cpu", eval_data=data.subset([0, 3]))
    with pytest.raises(EEGVLMError, match="does not exist"):
        finetune(tmp_path / "nope", data, FinetuneSettings(), "cpu")
    with pytest.raises(FinetuneError, match="'device'.*'cuda:N', but got 'gpu'"):
        finetune(parent, data, FinetuneSettings(), "gpu")


def test_saved_folder_loads_and_its_card_is_honest(parent, tmp_path):
    data, held_out = fake_night(8), fake_night(6, seed=7)
    held_out.meta["recordings"] = ["SC4001E0-PSG.edf"]
    meta = {**data.meta, "recordings": [{"name": "night2.edf", "sha256": "ab" * 32}],
            "n_corrected": 3}
    res = finetune(parent, data, FinetuneSettings(epochs=1, **FAST), "cpu", eval_data=held_out)
    assert res.metrics_before["n_epochs"] == res.metrics_after["n_epochs"] == 6
    parent_manifest = read_manifest(parent)
    save_finetuned(res, tmp_path / "ft", parent_manifest, meta, res.settings)
    model, _, manifest = load_model(tmp_path / "ft")
    card = manifest["card"]
    assert card["name"] == "ft" and card["date"].endswith("+00:00")
    assert card["parent_model"] == {"name": "parent", "folder": str(parent),
                                    "renderer_version": RENDERER_VERSION,
                                    "model_sha256": parent_manifest["files"]["model.safetensors"]}
    ftd = card["fine_tuning_data"]
    assert ftd["recordings"][0]["sha256"] == "ab" * 32 and ftd["n_corrected"] == 3
    assert ftd["stage_counts"]["W"] == 4 and ftd["n_examples"] == 8
    assert card["training_data"]["recordings"] == ["SC4001E0-PSG.edf", "night2.edf"]
    assert card["fine_tuning"]["settings"]["lr"] == 2e-3
    assert len(card["fine_tuning"]["history"]) == 1
    m = card["metrics"]
    assert m["before"]["n_epochs"] == m["after"]["n_epochs"] == 6 and m["eegvlm"] == m["after"]
    assert "held-out data: 6 epochs" in m["split"]
    assert "the parent model was trained on SC4001E0-PSG.edf" in m["split"]
    torch.testing.assert_close(model.stage_probs(held_out.images), res.model.stage_probs(
        held_out.images), rtol=0, atol=0)
    # Without held-out data: no metric at all, and a note saying why.
    res = finetune(parent, data, FinetuneSettings(**FAST), "cpu", should_stop=lambda: True)
    save_finetuned(res, tmp_path / "ft2", parent_manifest, data.meta, res.settings)
    card = json.loads((tmp_path / "ft2" / MANIFEST_FILE).read_text())["card"]
    assert card["metrics"] is None and "no held-out data" in card["metrics_note"]
    assert "\"accuracy\":" not in json.dumps(card)


def test_finetuned_folder_keeps_the_parents_night_context(parent, tmp_path):
    from eegvlm_desktop.core.staging.sequence import StageSequenceModel
    from eegvlm_desktop.ml.vlm.weights import read_sequence, write_sequence

    folder = tmp_path / "parent"
    shutil.copytree(parent, folder)
    seq = StageSequenceModel.fit(["W", "W", "N1", "N2", "N2", "N3", "R", "R"], source="p")
    write_sequence(folder, seq)
    res = finetune(folder, fake_night(4), FinetuneSettings(**FAST), "cpu",
                   should_stop=lambda: True)
    save_finetuned(res, tmp_path / "ft", read_manifest(folder), {}, res.settings)
    _, _, manifest = load_model(tmp_path / "ft")
    kept = read_sequence(manifest)
    assert kept is not None and kept.source == "p" and kept.n_transitions == 7


# ----------------------------------------------------------------- CLI
def _cli(capsys, *args):
    """``eegvlm finetune ...`` in this process, errors handled as cli.main does."""
    parsed = cli._parser().parse_args([str(a) for a in args])
    try:
        code = cli_model.run(parsed)
    except EEGVLMError as err:
        print(f"eegvlm: error: {err}", file=sys.stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def exports(tmp_path, monkeypatch):
    """Two export folders and a stand-in for the export folder loader."""
    folders = {tmp_path / "exp1": fake_night(8), tmp_path / "exp2": fake_night(6, seed=7)}
    for f in folders:
        f.mkdir()
    module = types.ModuleType("eegvlm_desktop.core.export.finetune_folder")
    module.load_finetune_dataset = lambda paths: folders[Path(paths[0])]
    monkeypatch.setitem(sys.modules, "eegvlm_desktop.core.export.finetune_folder", module)
    return list(folders)


def test_cli_finetune_end_to_end(parent, exports, tmp_path, capsys):
    out = tmp_path / "models" / "ft"
    code, stdout, stderr = _cli(capsys, "finetune", "--method", "image", "--model", parent, "--data", exports[0],
                                "--eval-data", exports[1], "--out", out, "--epochs", "1",
                                "--lr", "2e-3", "--batch-size", "4", "--freeze-vision",
                                "--device", "cpu", "--seed", "1")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["model"] == str(out) and result["examples"] == 8
    assert result["eval_examples"] == 6 and result["final"]["epoch"] == 1
    assert result["metrics_before"]["n_epochs"] == result["metrics_after"]["n_epochs"] == 6
    assert "step/s" in stderr and "2/2" in stderr  # the bar, on stderr only
    card = load_model(out)[2]["card"]
    assert card["fine_tuning"]["settings"]["freeze_vision"] is True
    assert card["fine_tuning"]["settings"]["seed"] == 1


def test_cli_finetune_errors_are_one_clear_line(parent, exports, tmp_path, capsys):
    base = ["finetune", "--method", "image", "--data", exports[0], "--device", "cpu", "--no-progress"]
    for extra, message in (
            (["--model", tmp_path / "nope", "--out", tmp_path / "o"], "does not exist"),
            (["--model", parent, "--out", parent], "--out must be a new folder"),
            (["--model", parent, "--out", tmp_path / "o", "--eval-data", tmp_path / "x"],
             "--eval-data: the export folder"),
            (["--model", parent, "--out", tmp_path / "o", "--lora-r", "4"], "'lora_r'")):
        code, stdout, stderr = _cli(capsys, *base, *extra)
        assert code == 2 and message in stderr and stdout == "", (extra, stderr)
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    old = fake_night(4)
    old.meta["renderer_version"] = "0"
    sys.modules["eegvlm_desktop.core.export.finetune_folder"].load_finetune_dataset = lambda paths: old
    code, _, stderr = _cli(capsys, *base, "--model", parent, "--out", tmp_path / "o")
    assert code == 2 and "renderer version '0'" in stderr


def test_cli_finetune_without_the_export_module(parent, exports, tmp_path, capsys,
                                                monkeypatch):
    monkeypatch.setitem(sys.modules, "eegvlm_desktop.core.export.finetune_folder", None)  # import fails
    code, _, stderr = _cli(capsys, "finetune", "--method", "image", "--model", parent, "--data", exports[0],
                           "--out", tmp_path / "o", "--device", "cpu")
    assert code == 2 and "export" in stderr


@pytest.mark.skipif("finetune" not in inspect.getsource(cli.main),
                    reason="eegvlm_desktop/cli.py does not route 'finetune' yet: add it to "
                           "'known' and to the train/evaluate dispatch in cli.main")
def test_main_routes_finetune(parent, exports, tmp_path, capsys):
    code = cli.main(["finetune", "--method", "image", "--model", str(parent), "--data", str(exports[0]), "--out",
                     str(tmp_path / "o"), "--epochs", "1", "--batch-size", "8", "--device",
                     "cpu", "--no-progress"])
    assert code == 0 and json.loads(capsys.readouterr().out)["examples"] == 8
