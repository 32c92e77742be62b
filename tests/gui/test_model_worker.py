"""The model worker: load, staging runs with progress, cancel, stale ids, explain, shutdown."""
from __future__ import annotations

import pytest

from tests.conftest import REPO, write_edf

MODEL = str(REPO / "model_weights" / "default")


@pytest.fixture
def worker(qtbot, qapp):
    from eegvlm_desktop.gui.workers import ModelWorker

    w = ModelWorker()
    yield w
    assert w.shutdown()
    assert not w.running  # no dangling thread


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return write_edf(tmp_path_factory.mktemp("mw") / "night.edf", duration_s=1200.0)  # 40 ep


def load(qtbot, worker, night):
    with qtbot.waitSignal(worker.modelLoaded, timeout=30000) as blocker:
        worker.load(MODEL, str(night), "cpu")
    return blocker.args[0]


def test_load_reports_card_and_channel_map(qtbot, worker, night):
    info = load(qtbot, worker, night)
    assert info["device"] == "cpu" and info["card"]["name"] == "default"
    assert any("Fpz-Cz" in line for line in info["channel_map"])


def test_bad_model_folder_gives_a_message(qtbot, worker, night, tmp_path):
    with qtbot.waitSignal(worker.modelFailed, timeout=30000) as blocker:
        worker.load(str(tmp_path), str(night), "cpu")
    assert "model" in blocker.args[0].lower()


def test_run_streams_batches_with_progress(qtbot, worker, night):
    load(qtbot, worker, night)
    got, progress = [], []
    worker.probsReady.connect(lambda e, p: got.extend(e.tolist()))
    worker.progressed.connect(lambda d, t, r: progress.append((d, t, r)))
    with qtbot.waitSignal(worker.runFinished, timeout=60000) as blocker:
        worker.run(range(40))
    assert sorted(got) == list(range(40)) and blocker.args[0].reason == "done"
    assert progress[-1][:2] == (40, 40) and all(r > 0 for *_, r in progress)
    assert not worker.busy


def test_prioritised_epoch_comes_early(qtbot, worker, night):
    load(qtbot, worker, night)
    got = []
    worker.probsReady.connect(lambda e, p: got.append(e.tolist()))
    with qtbot.waitSignal(worker.runFinished, timeout=60000):
        worker.run(range(40))
        worker.prioritise(35, radius=1)
    first_batches = [e for batch in got[:2] for e in batch]
    assert 35 in first_batches


def test_cancel_and_stale_runs_deliver_nothing(qtbot, worker, night):
    load(qtbot, worker, night)
    got = []
    worker.probsReady.connect(lambda e, p: got.append(set(e.tolist())))
    worker.run(range(0, 20))  # replaced at once: its results are stale
    with qtbot.waitSignal(worker.runFinished, timeout=60000):
        worker.run(range(20, 40))
    assert got and all(batch <= set(range(20, 40)) for batch in got)
    got.clear()
    finished = []
    worker.runFinished.connect(finished.append)
    worker.run(range(40))
    worker.cancel()
    # The cancelled run must not report; a following explain proves the thread moved on.
    with qtbot.waitSignal(worker.explained, timeout=60000):
        worker.explain(3)
    assert not finished and not worker.busy
    assert sum(len(b) for b in got) == 0


def test_explain_during_a_run_is_served_between_batches(qtbot, worker, night):
    load(qtbot, worker, night)
    order = []
    texts = []
    worker.textStreamed.connect(lambda ep, t: texts.append(ep))
    worker.explained.connect(lambda ep, img, ex: order.append(("explained", ep)))
    worker.runFinished.connect(lambda r: order.append(("finished", r.epochs)))
    with qtbot.waitSignal(worker.runFinished, timeout=60000):
        worker.run(range(40))
        worker.explain(7)
    assert order[0] == ("explained", 7) and texts and set(texts) == {7}


def test_explain_without_a_model_fails_clearly(qtbot, worker):
    with qtbot.waitSignal(worker.explainFailed, timeout=10000) as blocker:
        worker.explain(0)
    assert "No model" in blocker.args[0]


def test_cuda_request_without_a_gpu_falls_back_to_cpu(qtbot, worker, night, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with qtbot.waitSignal(worker.modelLoaded, timeout=30000) as blocker:
        worker.load(MODEL, str(night), "cuda")
    info = blocker.args[0]
    assert info["device"] == "cpu" and "loaded on the CPU" in info["notes"][0]
