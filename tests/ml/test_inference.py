"""InferenceEngine and EpochQueue: staging runs, priority, cancel, OOM fall-back, attention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.picture.rendering import EpochSignals, render_epoch
from eegvlm_desktop.core.recording.recording import read_recording
from eegvlm_desktop.ml.inference import EpochQueue, InferenceEngine

from tests.conftest import REPO

DEFAULT_MODEL = REPO / "model_weights" / "default"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from tests.conftest import write_edf

    path = write_edf(tmp_path_factory.mktemp("inf") / "night.edf", duration_s=600.0)
    torch.set_num_threads(2)
    return InferenceEngine.load(DEFAULT_MODEL, read_recording(path), "cpu", batch_size=4)


def test_queue_takes_in_order_and_prioritises_neighbours():
    q = EpochQueue(range(10))
    assert q.take(3) == [0, 1, 2]
    q.prioritise(7, radius=1)
    assert q.take(3) == [7, 8, 6]
    q.prioritise(1)  # already taken: nothing moves
    assert q.take(10) == [3, 4, 5, 9] and len(q) == 0 and q.total == 10


def test_run_stages_every_epoch_and_matches_a_direct_call(engine):
    got: dict[int, np.ndarray] = {}
    report = engine.run(EpochQueue(range(20)), lambda e, p: got.update(zip(e.tolist(), p)))
    assert report.reason == "done" and report.epochs == 20 and sorted(got) == list(range(20))
    # The image model's own answer is kept per source; the answer given is the pool of it
    # with the cohort stagers' answers, with the folder's weights.
    direct = engine.model.stage_probs(engine.images([5, 13])).numpy()
    np.testing.assert_allclose(report.sources["vlm"][[5, 13]], direct, atol=1e-5)
    assert engine.fusion is not None and set(report.sources) == {"vlm", "rsn", "yasa"}
    logs = {k: np.log(np.clip(v[[5, 13]], 1e-6, 1)) for k, v in report.sources.items()}
    np.testing.assert_allclose(np.vstack([got[5], got[13]]), engine.fusion.pool(logs),
                               atol=1e-5)
    assert all(abs(p.sum() - 1) < 1e-5 for p in got.values())
    assert report.unscorable == {}


def test_flat_epochs_get_no_stage_and_a_reason(tmp_path):
    """A flat EEG is not staged (REM at 0.9 before the gate), and the report says why."""
    import mne

    from tests.conftest import write_edf

    path = write_edf(tmp_path / "n.edf", duration_s=600.0)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    raw._data[:3, 3000:9000] = 0.0  # epochs 1 and 2: every EEG and EOG channel flat
    flat = tmp_path / "flat.edf"
    mne.export.export_raw(flat, raw, fmt="edf", overwrite=True, verbose="error")
    eng = InferenceEngine.load(DEFAULT_MODEL, read_recording(flat), "cpu", batch_size=8)
    got: dict[int, np.ndarray] = {}
    report = eng.run(EpochQueue(range(20)), lambda e, p: got.update(zip(e.tolist(), p)))
    assert sorted(report.unscorable) == [1, 2]
    assert "constant" in report.unscorable[1] or "flat" in report.unscorable[1]
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all() and np.isfinite(got[0]).all()
    assert any("2 of 20 epochs are unscorable" in n for n in report.notes)


def test_without_cohort_the_image_model_answers_alone(engine):
    bare = InferenceEngine(engine.model, engine.tokenizer, engine.recording,
                           {k: v for k, v in engine.manifest.items() if k != "fusion"}, 4,
                           cohort=engine.cohort)
    assert bare.fusion is None and bare.cohort is None
    got: dict[int, np.ndarray] = {}
    bare.run(EpochQueue([3]), lambda e, p: got.update(zip(e.tolist(), p)))
    np.testing.assert_allclose(got[3], engine.model.stage_probs(engine.images([3])).numpy()[0],
                               atol=1e-5)


def test_run_cancels_between_batches(engine):
    batches = []
    stop = {"now": False}

    def on_batch(e, p):
        batches.append(e)
        stop["now"] = True

    report = engine.run(EpochQueue(range(20)), on_batch, should_stop=lambda: stop["now"])
    assert report.reason == "cancelled" and len(batches) == 1 and report.epochs == 4


def test_oom_halves_the_batch_then_fails_clearly(engine, monkeypatch):
    calls = []

    def fake(model, images, batch_size):
        calls.append(batch_size)
        if batch_size > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return np.full((len(images), 5), 0.2)

    monkeypatch.setattr("eegvlm_desktop.ml.vlm.predict.predict_probs", fake)
    eng = InferenceEngine(engine.model, engine.tokenizer, engine.recording, batch_size=4)
    got = []
    report = eng.run(EpochQueue(range(3)), lambda e, p: got.append(e))
    assert calls[:3] == [4, 2, 1] and report.batch_size == 1 and report.epochs == 3
    assert any("batch size lowered to 1" in n for n in report.notes)

    def always(model, images, batch_size):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("eegvlm_desktop.ml.vlm.predict.predict_probs", always)
    with pytest.raises(EEGVLMError, match="Out of memory"):
        eng.run(EpochQueue(range(2)), lambda e, p: None)


def test_load_refuses_cuda_without_a_gpu(engine, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EEGVLMError, match="'device'"):
        InferenceEngine.load(DEFAULT_MODEL, engine.recording, "cuda")


def test_explain_returns_the_image_the_model_saw(engine):
    texts = []
    image, ex = engine.explain(3, on_text=texts.append)
    np.testing.assert_array_equal(image, engine.images([3])[0])
    assert texts and ex.steps and ex.stage in (None, "W", "N1", "N2", "N3", "R")


def test_explain_measures_the_night_once_and_grounds_the_reasoning(engine, monkeypatch):
    """Issue 19: the first explanation measures the night (and says so), later ones reuse it;
    the reasoning starts with the measured steps and every step is verified."""
    from eegvlm_desktop.core.picture import evidence
    from eegvlm_desktop.core.picture.cot import measured_steps
    from eegvlm_desktop.ml.inference import MEASURING_TEXT

    calls = []
    real = evidence.measure_night

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(evidence, "measure_night", counting)
    eng = InferenceEngine(engine.model, engine.tokenizer, engine.recording, batch_size=4)
    texts: list[str] = []
    _, ex = eng.explain(3, on_text=texts.append)
    assert texts[0] == MEASURING_TEXT and len(calls) == 1
    assert ex.measured == 3 and ex.verified
    assert ex.steps[:3] == measured_steps(eng.epoch_evidence(3))
    texts.clear()
    _, ex = eng.explain(7, on_text=texts.append)  # the night's evidence is kept
    assert len(calls) == 1 and MEASURING_TEXT not in texts and ex.verified
    with pytest.raises(ValueError, match="'epoch'.*99"):
        eng.epoch_evidence(99)


def _burst_image(onset_s: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(3000) / 100.0
    sig = {}
    for role in ("eeg_frontal", "eeg_central", "eeg_occipital"):
        x = rng.normal(0, 8, t.size)
        seg = (t >= onset_s) & (t < onset_s + 4)
        x[seg] += 60 * np.sin(2 * np.pi * 13 * t[seg])  # a 4-s 13-Hz spindle burst
        sig[role] = x
    sig["eog"] = rng.normal(0, 10, t.size)
    sig["emg"] = rng.normal(0, 2, t.size)
    return render_epoch(EpochSignals(sig))


def test_attention_is_the_models_and_follows_a_spindle_burst(engine):
    """The shipped model's answer attention moves with the burst (issue: honest overlay)."""
    model = engine.model
    grid = model.config.vision.grid
    cols = []
    maps = []
    for onset in (2.0, 24.0):
        m = model.attention_maps(_burst_image(onset), model.config.direct_prompt_ids)[0].numpy()
        maps.append(m)
        trace_rows = m[: int(grid * 180 / 224)]  # the five trace bands, not the spectrogram
        cols.append(int(trace_rows.sum(axis=0).argmax()))
    assert not np.allclose(maps[0], maps[1])
    # Column c covers [c, c+1) * 30 / grid seconds: the burst's columns get the most attention.
    assert cols[0] * 30 / grid <= 6.0
    assert (cols[1] + 1) * 30 / grid >= 24.0
