"""Training loop on a tiny model and fake images: it learns, predicts and cross-validates."""
from __future__ import annotations

import numpy as np
import pytest

from eegvlm_desktop.core.export.dataset import NightData, load_dataset, save_dataset
from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION
from eegvlm_desktop.ml.training import TrainSettings, cross_validate, train
from eegvlm_desktop.ml.vlm.predict import predict_probs


def fake_night(n: int = 24, seed: int = 0) -> NightData:
    """Two visually distinct classes: W epochs have a bright top band, N3 a bright bottom."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (n, 224, 224, 3), dtype=np.uint8)
    stages = ["W" if i % 2 == 0 else "N3" for i in range(n)]
    for i, s in enumerate(stages):
        rows = slice(0, 60) if s == "W" else slice(160, 224)
        images[i, rows] = 230
    answers = [f"1. Background activity looks {'fast' if s == 'W' else 'slow'}. Stage: {s}"
               for s in stages]
    return NightData(images, stages, answers, np.arange(n), np.zeros(n, int),
                     {"format": 1, "renderer_version": RENDERER_VERSION})


def test_train_learns_and_predicts():
    data = fake_night()
    settings = TrainSettings(preset="tiny", epochs=12, batch_size=8, lr=2e-3, balance=False)
    model, tok, history = train(data, settings, device="cpu")
    assert history[-1]["loss"] < history[0]["loss"]
    probs = predict_probs(model, data.images)
    assert probs.shape == (24, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    pred = np.array(["W", "N1", "N2", "N3", "R"])[probs.argmax(1)]
    assert (pred == np.array(data.stages)).mean() >= 0.75


def test_cross_validate_out_of_fold_and_stop():
    data = fake_night(12, seed=1)
    settings = TrainSettings(preset="tiny", epochs=1, batch_size=6, balance=True)
    probs = cross_validate(data, 3, settings, device="cpu")
    assert probs.shape == (12, 5) and np.all(probs.sum(1) > 0.99)
    model, _, history = train(data, settings, device="cpu", should_stop=lambda: True)
    assert history == []


def test_progress_counts_every_step():
    data = fake_night(10, seed=2)
    calls = []
    train(data, TrainSettings(preset="tiny", epochs=2, batch_size=4), "cpu",
          progress=lambda *a: calls.append(a))
    # ceil(10 / 4) = 3 steps per epoch, 2 epochs.
    assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]
    assert [c[2]["epoch"] for c in calls] == [1, 1, 1, 2, 2, 2]
    assert all(np.isfinite(c[2]["loss"]) for c in calls)


def test_cross_validate_selected_folds_and_progress():
    data = fake_night(12, seed=1)
    settings = TrainSettings(preset="tiny", epochs=1, batch_size=4)
    calls = []
    probs = cross_validate(data, 4, settings, device="cpu", folds=[0, 2],
                           progress=lambda *a: calls.append(a))
    # Folds 0 and 2 test epochs 0-2 and 6-8; each trains on 9 epochs = 3 steps.
    ran = np.zeros(12, bool)
    ran[[0, 1, 2, 6, 7, 8]] = True
    assert np.allclose(probs[ran].sum(1), 1, atol=1e-5) and np.isnan(probs[~ran]).all()
    assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]
    assert [c[2]["fold"] for c in calls] == [0, 0, 0, 2, 2, 2]
    for bad in ([], [0, 0], [4], [-1]):
        with pytest.raises(ValueError, match="'folds' parameter"):
            cross_validate(data, 4, settings, device="cpu", folds=bad)


def test_dataset_round_trip_without_pickle(tmp_path):
    data = fake_night(4)
    path = save_dataset(data, tmp_path / "d.npz")
    back = load_dataset(path)
    assert back.stages == data.stages and back.answers == data.answers
    assert np.array_equal(back.images, data.images)
    data.meta["renderer_version"] = "0"
    save_dataset(data, tmp_path / "old.npz")
    with pytest.raises(Exception, match="renderer version"):
        load_dataset(tmp_path / "old.npz")


def test_augment_trains_on_the_variants_too():
    """Originals carry no class information, the variants do: only augment can learn it."""
    data = fake_night(24, seed=2)
    informative = data.images.copy()
    rng = np.random.default_rng(5)
    data.images = rng.integers(0, 40, data.images.shape, dtype=np.uint8)
    data.variants = np.repeat(informative[:, None], 3, axis=1)
    # 3 of 4 draws informative; the originals alone are noise (chance: 0.5).
    settings = TrainSettings(preset="tiny", epochs=20, batch_size=8, lr=2e-3, balance=False,
                             augment=3)
    model, _, _ = train(data, settings, device="cpu")
    pred = np.array(["W", "N1", "N2", "N3", "R"])[predict_probs(model, informative).argmax(1)]
    assert (pred == np.array(data.stages)).mean() >= 0.75


def test_augment_zero_ignores_variants_and_too_many_is_refused():
    import torch

    data = fake_night(8, seed=3)
    settings = TrainSettings(preset="tiny", epochs=1, batch_size=4, balance=True)
    a, _, _ = train(data, settings, device="cpu")
    data.variants = np.zeros((8, 2, 224, 224, 3), np.uint8)
    b, _, _ = train(data, settings, device="cpu")  # same random stream, same weights
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    for bad in (3, -1, True):
        settings.augment = bad
        with pytest.raises(ValueError, match="'augment' setting"):
            train(data, settings, device="cpu")


def test_variants_follow_subset_save_and_concat(tmp_path):
    from eegvlm_desktop.core.export.dataset import concat

    data = fake_night(4)
    data.variants = np.arange(4, dtype=np.uint8)[:, None, None, None, None] * np.ones(
        (1, 2, 224, 224, 3), np.uint8)
    sub = data.subset(np.array([3, 1]))
    assert sub.variants[:, 0, 0, 0, 0].tolist() == [3, 1]
    back = load_dataset(save_dataset(data, tmp_path / "v.npz"))
    assert np.array_equal(back.variants, data.variants)
    assert load_dataset(save_dataset(fake_night(2), tmp_path / "p.npz")).variants is None
    assert concat([data, data]).variants.shape == (8, 2, 224, 224, 3)
    with pytest.raises(ValueError, match="same number of training variants"):
        concat([data, fake_night(2)])


def test_cross_validate_resumes_a_fold_cut_short(tmp_path):
    data = fake_night(12, seed=4)
    settings = TrainSettings(preset="tiny", epochs=2, batch_size=6, balance=True)
    whole = cross_validate(data, 2, settings, device="cpu", folds=[1])

    def cut(done, total, info):
        if done == 2:  # inside epoch 2, before its checkpoint: the kill of a session end
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cross_validate(data, 2, settings, device="cpu", folds=[1], progress=cut,
                       checkpoint_root=tmp_path)
    assert (tmp_path / "fold1.checkpoints" / "checkpoint.json").exists()
    resumed = cross_validate(data, 2, settings, device="cpu", folds=[1],
                             checkpoint_root=tmp_path, resume=True)
    assert np.array_equal(whole, resumed, equal_nan=True)
    # A finished fold is only reloaded: same answers again.
    again = cross_validate(data, 2, settings, device="cpu", folds=[1],
                           checkpoint_root=tmp_path, resume=True)
    assert np.array_equal(whole, again, equal_nan=True)
