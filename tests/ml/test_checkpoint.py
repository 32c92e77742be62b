"""Resumable training: a resumed run is bit-identical, and bad checkpoints are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eegvlm_desktop.ml import checkpoint
from eegvlm_desktop.ml.checkpoint import (POINTER_FILE, TENSORS_FILE, CheckpointError,
                                          load_checkpoint, peek_checkpoint, save_checkpoint)
from eegvlm_desktop.ml.training import TrainSettings, train
from tests.ml.test_training import fake_night

SETTINGS = TrainSettings(preset="tiny", epochs=2, batch_size=6, lr=2e-3)  # 2 steps/epoch


def _stop_after(n_steps: int):
    """should_stop + progress pair that stops once ``n_steps`` steps are done."""
    calls: list[tuple] = []
    return (lambda: len(calls) >= n_steps), (lambda *a: calls.append(a)), calls


def _current_folder(ckpt_dir):
    return ckpt_dir / json.loads((ckpt_dir / POINTER_FILE).read_text())["folder"]


def _first_epoch_checkpoint(tmp_path, data=None):
    """Train SETTINGS, stopped by should_stop right after epoch 1 (its checkpoint kept)."""
    stop, prog, calls = _stop_after(2)
    _, _, history = train(data or fake_night(12), SETTINGS, "cpu", should_stop=stop,
                          progress=prog, checkpoint_dir=tmp_path / "ck")
    assert len(history) == 1 and [c[:2] for c in calls] == [(1, 4), (2, 4)]
    return tmp_path / "ck"


def test_stop_then_resume_is_bitwise_identical(tmp_path):
    data = fake_night(12)
    straight, _, h_straight = train(data, SETTINGS, "cpu")
    ck = _first_epoch_checkpoint(tmp_path, data)
    assert peek_checkpoint(ck)["epoch"] == 1
    calls: list[tuple] = []
    resumed, tok, h_resumed = train(data, SETTINGS, "cpu", checkpoint_dir=ck, resume=True,
                                    progress=lambda *a: calls.append(a))
    # Only epoch 2 ran, and the step count carries on from the checkpoint.
    assert [c[:2] for c in calls] == [(3, 4), (4, 4)] and calls[0][2]["epoch"] == 2
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in h_straight]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in h_resumed] == strip
    # One complete checkpoint (epoch 2) is left; the epoch-1 folder is gone.
    assert peek_checkpoint(ck)["epoch"] == 2
    assert sorted(p.name for p in ck.iterdir()) == sorted([POINTER_FILE,
                                                           _current_folder(ck).name])


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_write = checkpoint.atomic_write_text

    def write(path, text):
        if json.loads(text)["epoch"] == 2:  # epoch 2's folder is written, not yet named
            raise OSError("disk full")
        real_write(path, text)

    monkeypatch.setattr(checkpoint, "atomic_write_text", write)
    ck = tmp_path / "ck"
    with pytest.raises(OSError, match="disk full"):
        train(fake_night(12), SETTINGS, "cpu", checkpoint_dir=ck)
    assert peek_checkpoint(ck)["epoch"] == 1 and len(list(ck.glob("epoch-*"))) == 2
    monkeypatch.undo()
    # The orphan folder is ignored, then removed; more epochs than planned are allowed.
    more = TrainSettings(**{**SETTINGS.to_dict(), "epochs": 3})
    _, _, history = train(fake_night(12), more, "cpu", checkpoint_dir=ck, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [p.name for p in ck.glob("epoch-*")] == [_current_folder(ck).name]


def test_resume_without_checkpoint_starts_afresh(tmp_path):
    _, _, history = train(fake_night(6), TrainSettings(preset="tiny", epochs=1, batch_size=6),
                          "cpu", checkpoint_dir=tmp_path / "new", resume=True)
    assert len(history) == 1 and peek_checkpoint(tmp_path / "new")["epoch"] == 1


def test_mismatched_settings_or_data_are_refused(tmp_path):
    ck = _first_epoch_checkpoint(tmp_path)
    other = TrainSettings(**{**SETTINGS.to_dict(), "lr": 1e-3, "batch_size": 4})
    with pytest.raises(CheckpointError, match=r"batch_size: checkpoint 6, requested 4.*lr"):
        train(fake_night(12), other, "cpu", checkpoint_dir=ck, resume=True)
    with pytest.raises(CheckpointError, match="'data' parameter.*other examples"):
        train(fake_night(12, seed=5), SETTINGS, "cpu", checkpoint_dir=ck, resume=True)


def test_corrupt_or_missing_files_are_refused(tmp_path):
    ck = _first_epoch_checkpoint(tmp_path)
    folder = _current_folder(ck)
    tensors = folder / TENSORS_FILE
    good = tensors.read_bytes()
    tensors.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="corrupted"):
        train(fake_night(12), SETTINGS, "cpu", checkpoint_dir=ck, resume=True)
    tensors.unlink()
    with pytest.raises(CheckpointError, match=f"incomplete.*{TENSORS_FILE}' is missing"):
        load_checkpoint(ck)
    (ck / POINTER_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(ck)
    # Without resume the broken checkpoint is simply replaced.
    _, _, history = train(fake_night(12), SETTINGS, "cpu", checkpoint_dir=ck)
    assert len(history) == 2 and load_checkpoint(ck).epoch == 2


def test_optimizer_scheduler_and_rng_round_trip(tmp_path, tokenizer):
    """AdamW state, scheduler and the batching RNG come back exactly (small model)."""
    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
        return model, opt, sched

    model, opt, sched = make()
    for _ in range(3):
        model(torch.randn(5, 4)).square().sum().backward()
        opt.step()
        sched.step()
    rng = np.random.default_rng(7)
    rng.random(3)
    save_checkpoint(tmp_path, epoch=1, model=model, optimizer=opt, scheduler=sched,
                    tokenizer=tokenizer, batch_rng=rng, settings={"x": 1}, history=[{}],
                    data_sha256="abc")
    expected_draw = torch.rand(4)
    model2, opt2, sched2 = make()
    rng2 = np.random.default_rng(0)
    ckpt = load_checkpoint(tmp_path)
    ckpt.check({"x": 1}, "abc")
    ckpt.restore(model2, opt2, sched2, rng2)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert isinstance(b["param_groups"][0]["betas"], tuple)
    for i in a["state"]:
        assert a["state"][i].keys() == b["state"][i].keys()
        assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for k in a["state"][i])
    assert sched2.state_dict() == sched.state_dict() and sched2.get_last_lr() == [1e-2 / 4]
    assert rng2.random() == rng.random()
    assert torch.equal(torch.rand(4), expected_draw)  # torch RNG restored too
    assert tokenizer.get_vocab() == ckpt.tokenizer.get_vocab()
