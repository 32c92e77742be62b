"""Viewer benchmark: launch, open-to-first-frame, page-step time and peak RSS, as JSON.

Makes (once, cached in the temp folder) an 8-hour (``--hours``), 10-channel, 256-Hz EDF, then

* **launch** (``--launches`` fresh processes): ``python -m eegvlm_desktop gui FILE`` as a
  user starts it, timed from just before the process is started to the first paint of the
  main window (``launch_to_window_s``) and to the first paint of the night's first page
  (``launch_to_first_page_s``), with the process's peak RSS then (``peak_rss_mb``) and after
  2 s more on that page (``peak_rss_settled_mb``: the side panels filled in; no model is
  loaded);
* **paging**, in another fresh process: creates the window offscreen at 1600x900, opens the
  file, forces the first frame, and pages forward N times; each step is timed from the key
  action until the signal view has repainted the new page (a paint-event counter proves it)
  and the event loop has drained whatever else the step dirtied. ``peak_rss_mb`` is that
  process's peak after the steps: the viewer before any model loads.

    python bench/viewer.py [--hours 8] [--steps 300] [--launches 5] [--file PATH]

Offscreen unless ``--display`` (then the current $DISPLAY, e.g. under xvfb-run).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOURS, N_CH, SFREQ = 8, 10, 256
SETTLE_MS = 2000
TARGETS = {"launch_to_window_s": 1.0, "open_to_first_frame_s": 0.08,
           "page_step_median_ms": 10, "page_step_p95_ms": 15, "peak_rss_mb": 200}


def make_edf(path: Path, hours: int = HOURS) -> None:
    """Write the synthetic night with edfio, one channel at a time (bounded memory)."""
    import numpy as np
    from edfio import Edf, EdfSignal

    rng = np.random.default_rng(0)
    n = hours * 3600 * SFREQ
    t = np.arange(n) / SFREQ
    names = ["Fp1", "Fp2", "C3", "C4", "O1", "O2", "F3", "F4", "EOG L", "EMG chin"]
    signals = []
    for i, name in enumerate(names):
        x = rng.normal(0, 15, n) + 25 * np.sin(2 * np.pi * (6 + i) * t) \
            + 40 * np.sin(2 * np.pi * 0.8 * t + i)
        signals.append(EdfSignal(x.astype(np.float64), SFREQ, label=name,
                                 physical_dimension="uV", physical_range=(-500, 500)))
    tmp = path.with_suffix(".partial")
    Edf(signals).write(tmp)
    os.replace(tmp, path)


def PaintCounter(widget):  # noqa: N802 - a factory: Qt is imported only in the child process
    from PySide6.QtCore import QEvent, QObject

    class _Counter(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def eventFilter(self, obj, event):  # noqa: N802
            if event.type() == QEvent.Type.Paint:
                self.count += 1
            return False

    counter = _Counter()
    widget.installEventFilter(counter)
    return counter


def measure(path: Path, steps: int, hours: int = HOURS) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PySide6.QtCore import QSettings

    from eegvlm_desktop.gui.app import make_app
    from eegvlm_desktop.gui.main_window import MainWindow

    app = make_app()
    settings_dir = tempfile.mkdtemp(prefix="eegvlm-bench-")
    settings = QSettings(os.path.join(settings_dir, "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, user="bench", data_dir=Path(settings_dir))
    w.resize(1600, 900)
    w.show()
    # As a scorer would: the app is up before a night is opened, and its job worker has
    # warmed what the window starts once it is on screen (the recording reader's imports;
    # until issue 18, YASA). Opening and paging then measure the viewer, not those imports.
    warmed = []
    w.worker.jobDone.connect(lambda _id, kind, _r: warmed.append(kind))
    warm = time.perf_counter()
    while time.perf_counter() - warm < 30 and not (
            "warmup" in warmed or (time.perf_counter() - warm > 2 and w.worker.idle())):
        app.processEvents()
    warm = time.perf_counter() - warm
    t0 = time.perf_counter()
    ok = w.open_file(path)
    w.grab()  # first frame actually painted
    first_frame = time.perf_counter() - t0
    if not ok:
        raise SystemExit("could not open the benchmark file")
    painted = PaintCounter(w.signal_view.viewport())
    times, unpainted = [], 0
    for _ in range(steps):
        before = painted.count
        s = time.perf_counter()
        w.actions["next_page"].trigger()
        # Run the event loop until the signal view has actually repainted the new page
        # (scene updates are deferred to the loop, so one pass may not be enough).
        while painted.count == before and time.perf_counter() - s < 2:
            app.processEvents()
        app.processEvents()  # whatever else the step dirtied (hypnogram marker, status bar)
        times.append(time.perf_counter() - s)
        unpainted += painted.count == before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model_loaded = any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    w.close()
    times_ms = np.array(times) * 1000
    return {
        "benchmark": "viewer",
        "file": {"hours": hours, "channels": N_CH, "sfreq_hz": SFREQ,
                 "size_mb": round(path.stat().st_size / 1e6, 1)},
        "window": "1600x900 offscreen",
        "worker_warmup_s": round(warm, 2),
        "open_to_first_frame_s": round(first_frame, 3),
        "page_steps": steps,
        "steps_without_repaint": unpainted,
        "page_step_ms": {"median": round(float(np.median(times_ms)), 2),
                         "p95": round(float(np.percentile(times_ms, 95)), 2),
                         "max": round(float(times_ms.max()), 2)},
        "peak_rss_mb": round(peak, 1),
        "torch_imported": model_loaded,
    }


def launch_child(path: Path, t0: float) -> None:
    """In a fresh process: the app's own ``main(['gui', path])``, timed by paint events.

    The QApplication the app creates gets an event filter (installed by wrapping
    ``make_app``; the app's code is otherwise untouched) that notes the first paint of any
    part of the main window and the first paint of the signal view once a night is open,
    then quits and prints JSON. ``t0`` is the parent's wall clock just before it started
    this process, so interpreter start-up and every import count.
    """
    import eegvlm_desktop.gui.app as app_module

    marks: dict[str, float] = {}
    peaks: dict[str, float] = {}
    make_app = app_module.make_app

    def wrapped():
        from PySide6.QtCore import QEvent, QObject, QTimer
        from PySide6.QtWidgets import QMainWindow, QWidget

        app = make_app()

        class FirstPaints(QObject):
            def eventFilter(self, obj, event):  # noqa: N802
                if event.type() != QEvent.Type.Paint or not isinstance(obj, QWidget):
                    return False
                win = obj.window()
                if not isinstance(win, QMainWindow):
                    return False
                now = time.time() - t0
                marks.setdefault("launch_to_window_s", now)
                view = getattr(win, "signal_view", None)
                if getattr(win, "doc", None) is not None and view is not None \
                        and obj is view.viewport() and "launch_to_first_page_s" not in marks:
                    marks["launch_to_first_page_s"] = now
                    peaks["at_first_page"] = resource.getrusage(
                        resource.RUSAGE_SELF).ru_maxrss / 1024
                    # Then 2 s of a scorer looking at the page: the panels fill in (the
                    # epoch panel renders the model's picture of the epoch; no model loads).
                    QTimer.singleShot(SETTLE_MS, app.quit)
                return False

        app._bench_filter = FirstPaints()  # kept alive with the app
        app.installEventFilter(app._bench_filter)
        QTimer.singleShot(60000, app.quit)  # never hang a bench
        return app

    app_module.make_app = wrapped
    from eegvlm_desktop.cli import main as cli_main

    code = cli_main(["gui", str(path)])
    print(json.dumps({**{k: round(v, 3) for k, v in marks.items()}, "exit_code": code,
                      "peak_rss_mb": round(peaks.get("at_first_page", math.nan), 1),
                      "peak_rss_settled_mb": round(resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "torch_imported": "torch" in sys.modules,
                      "yasa_imported": "yasa" in sys.modules,
                      "scipy_signal_imported": "scipy.signal" in sys.modules}))


def measure_launches(path: Path, n: int, display: bool) -> dict:
    """``n`` fresh launches (the first may find a cold disk cache); medians and each run."""
    import statistics

    env = dict(os.environ)
    if not display:
        env["QT_QPA_PLATFORM"] = "offscreen"
    runs = []
    with tempfile.TemporaryDirectory(prefix="eegvlm-bench-home-") as home:
        # A fresh settings folder: no remembered geometry, recent files or model choice.
        env["XDG_CONFIG_HOME"] = home
        for _ in range(n):
            t0 = time.time()
            out = subprocess.run([sys.executable, __file__, "--launch-child", str(t0),
                                  "--file", str(path)], check=True, capture_output=True,
                                 text=True, env=env)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("launch_to_window_s", "launch_to_first_page_s", "peak_rss_mb",
            "peak_rss_settled_mb")
    return {"launches": n, "platform": env.get("QT_QPA_PLATFORM") or "display",
            **{k: round(statistics.median(r[k] for r in runs), 3) for k in keys},
            "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hours", type=int, default=HOURS, help="length of the synthetic night")
    ap.add_argument("--launches", type=int, default=5,
                    help="fresh launches timed to the window's first paint (0: none)")
    ap.add_argument("--display", action="store_true",
                    help="launch on the current $DISPLAY instead of offscreen")
    ap.add_argument("--file", type=Path, default=None)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--launch-child", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = args.file or (Path(tempfile.gettempdir())
                         / f"eegvlm-bench-{args.hours}h-{N_CH}ch-{SFREQ}hz.edf")
    if args.launch_child is not None:
        launch_child(path, args.launch_child)
        return
    if args.measure:
        print(json.dumps(measure(path, args.steps, args.hours)))
        return
    if not path.exists():
        # Generating needs ~0.6 GB per 8 h; its own process, so it does not count in RSS.
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import viewer; from pathlib import Path; "
                        f"viewer.make_edf(Path({str(path)!r}), {args.hours})"], check=True)
    load_at_start = open("/proc/loadavg").read().split()[:3]
    result = {}
    if args.launches > 0:
        result["launch"] = measure_launches(path, args.launches, args.display)
    out = subprocess.run([sys.executable, __file__, "--measure", "--steps", str(args.steps),
                          "--hours", str(args.hours), "--file", str(path)], check=True,
                         capture_output=True, text=True)
    paging = json.loads(out.stdout)
    result = {**paging, **result}
    result["targets"] = TARGETS
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         # Timings are only comparable on an idle machine: say what ran.
                         "loadavg_at_start": load_at_start,
                         "loadavg_at_end": open("/proc/loadavg").read().split()[:3]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
