"""The job worker's long, cancellable jobs: progress and cancel while running."""
from __future__ import annotations

import threading

import pytest


@pytest.fixture
def jobs(qapp):
    from eegvlm_desktop.gui.workers import JobWorker

    w = JobWorker(name="test-jobs")
    yield w
    assert w.shutdown() and not w.running


def test_cancellable_job_reports_progress_and_result(qtbot, jobs):
    def work(n, *, should_stop, progress):
        for i in range(n):
            progress(i + 1, n, {"step": i})
        return "done"

    seen = []
    jobs.jobProgressed.connect(lambda rid, kind, d, t, info: seen.append((kind, d, t)))
    with qtbot.waitSignal(jobs.jobDone, timeout=10000) as blocker:
        rid = jobs.submit("long", work, 3, cancellable=True)
    assert blocker.args == [rid, "long", "done"]
    assert seen == [("long", 1, 3), ("long", 2, 3), ("long", 3, 3)]


def test_cancel_stops_a_running_job(qtbot, jobs):
    started = threading.Event()

    def work(*, should_stop, progress):
        started.set()
        while not should_stop():
            threading.Event().wait(0.005)
        raise RuntimeError("stopped")  # what a cancelled core job does (it raises)

    done = []
    jobs.jobDone.connect(lambda *a: done.append(a))
    jobs.submit("long", work, cancellable=True)
    assert started.wait(10)
    jobs.cancel("long")
    qtbot.waitUntil(jobs.idle, timeout=10000)
    assert not done  # a cancelled job never reports a result


def test_plain_jobs_are_unchanged(qtbot, jobs):
    with qtbot.waitSignal(jobs.jobDone, timeout=10000) as blocker:
        jobs.submit("plain", lambda a, b: a + b, 2, 3)
    assert blocker.args[2] == 5
