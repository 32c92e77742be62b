"""The model inside the app: staging speed and GUI responsiveness while it runs (JSON out).

Measures on the example night, in this order:

1. ``direct``: ``InferenceEngine.run`` called on the main thread (no Qt), batches of 16;
2. ``worker``: the same run through :class:`ModelWorker` (its own QThread), no window;
3. ``app``: the real scoring window (offscreen) staging the whole night with Ctrl+R while a
   timer probe measures event-loop latency (how late a 10-ms timer fires) and, at the same
   time, the scorer pages through the night (one page step every 100 ms), as one would.

The worker/direct ratio says what the thread costs; the latency p95 says whether the window
stays fluid (target <= 50 ms on 2 cores).

    python bench/app_inference.py [--threads N] [--epochs 852]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PSG = REPO / "resources" / "example" / "SC4001-example-PSG.edf"
MODEL = REPO / "model_weights" / "default"


def _direct(threads: int, n: int) -> float:
    import torch

    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.inference import EpochQueue, InferenceEngine

    torch.set_num_threads(threads)
    eng = InferenceEngine.load(MODEL, read_recording(PSG), "cpu")
    eng.run(EpochQueue(range(16)), lambda e, p: None)  # warm-up
    t = time.perf_counter()
    eng.run(EpochQueue(range(n)), lambda e, p: None)
    return n / (time.perf_counter() - t)


def _wait(app, cond, timeout: float = 600.0) -> None:
    end = time.perf_counter() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > end:
            raise TimeoutError("benchmark step timed out")


def _worker(app, threads: int, n: int) -> float:
    from eegvlm_desktop.gui.workers import ModelWorker

    w = ModelWorker(threads=threads)
    state: dict = {}
    w.modelLoaded.connect(lambda info: state.setdefault("loaded", True))
    w.runFinished.connect(lambda r: state.__setitem__("report", r))
    w.load(str(MODEL), str(PSG), "cpu")
    _wait(app, lambda: "loaded" in state)
    w.run(range(16))  # warm-up
    _wait(app, lambda: "report" in state)
    state.pop("report")
    t = time.perf_counter()
    w.run(range(n))
    _wait(app, lambda: "report" in state)
    rate = n / (time.perf_counter() - t)
    w.shutdown()
    return rate


def _app(app, threads: int) -> dict:
    import numpy as np
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer

    from eegvlm_desktop.gui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp())
    settings = QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("model/threads", threads)
    win = MainWindow(settings=settings, user="bench", data_dir=tmp / "u")
    win.resize(1600, 900)
    win.show()
    win.open_file(PSG)
    win.model.auto_explain = False
    state: dict = {}
    wk = win.model.worker
    wk.modelLoaded.connect(lambda info: state.setdefault("loaded", True))
    wk.runFinished.connect(lambda r: state.__setitem__("report", r))
    win.model.run_page()  # load + warm-up on one page
    _wait(app, lambda: "report" in state)
    state.pop("report")

    lat: list[float] = []
    clock = QElapsedTimer()
    probe = QTimer()
    probe.setInterval(10)
    last = {"t": 0}

    def tick() -> None:
        now = clock.elapsed()
        lat.append(max(0.0, now - last["t"] - 10))
        last["t"] = now

    probe.timeout.connect(tick)
    pager = QTimer()
    pager.setInterval(100)
    pager.timeout.connect(lambda: win.nav.go_to((win.nav.epoch + 1) % win.nav.n_epochs))
    clock.start()
    probe.start()
    pager.start()
    t = time.perf_counter()
    win.model.run_night()
    _wait(app, lambda: "report" in state)
    seconds = time.perf_counter() - t
    probe.stop()
    pager.stop()
    n = win.model.layer.n_done
    win.close()
    a = np.asarray(lat[5:])
    return {"epochs": n, "seconds": round(seconds, 2),
            "epochs_per_s": round(state["report"].epochs / seconds, 1),
            "event_loop_latency_ms": {"p50": round(float(np.percentile(a, 50)), 1),
                                      "p95": round(float(np.percentile(a, 95)), 1),
                                      "max": round(float(a.max()), 1), "samples": int(a.size)},
            "page_steps_during_run": int(seconds * 10)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None,
                    help="model threads (default: the app's choice, all cores but one)")
    ap.add_argument("--epochs", type=int, default=400,
                    help="epochs for the direct and worker runs")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO))
    from eegvlm_desktop.gui.app import make_app
    from eegvlm_desktop.gui.workers import default_model_threads

    threads = args.threads or default_model_threads()
    app = make_app()
    direct = _direct(threads, args.epochs)
    worker = _worker(app, threads, args.epochs)
    in_app = _app(app, threads)
    print(json.dumps({
        "benchmark": "app_inference", "model": MODEL.name, "cpu_cores": os.cpu_count(),
        "model_threads": threads,
        "direct_epochs_per_s": round(direct, 1), "worker_epochs_per_s": round(worker, 1),
        "worker_vs_direct_ratio": round(worker / direct, 2),
        "app": in_app,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"event_loop_latency_p95_ms": 50}}))


if __name__ == "__main__":
    main()
