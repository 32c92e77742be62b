"""Viewer benchmark: open-to-first-frame, page-step time and peak RSS, printed as JSON.

Makes (once, cached in the temp folder) an 8-hour, 10-channel, 256-Hz EDF, then in a fresh
process: creates the window offscreen at 1600x900, opens the file, forces the first frame,
and pages forward N times; each step is timed from the key action until the signal
view has repainted the new page (a paint-event counter proves it) and the event loop
has drained whatever else the step dirtied.

    python bench/viewer.py [--steps 300] [--file PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOURS, N_CH, SFREQ = 8, 10, 256


def make_edf(path: Path) -> None:
    """Write the synthetic night with edfio, one channel at a time (bounded memory)."""
    import numpy as np
    from edfio import Edf, EdfSignal

    rng = np.random.default_rng(0)
    n = HOURS * 3600 * SFREQ
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


def measure(path: Path, steps: int) -> dict:
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
    # As a scorer would: the app is up (its worker has pre-imported YASA, ~2 s) before a
    # night is opened. Opening and paging then measure the viewer, not that import.
    warm = time.perf_counter()
    while not w.worker.idle() and time.perf_counter() - warm < 30:
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
    w.close()
    times_ms = np.array(times) * 1000
    return {
        "benchmark": "viewer",
        "file": {"hours": HOURS, "channels": N_CH, "sfreq_hz": SFREQ,
                 "size_mb": round(path.stat().st_size / 1e6, 1)},
        "window": "1600x900 offscreen",
        "worker_warmup_s": round(warm, 2),
        "open_to_first_frame_s": round(first_frame, 3),
        "page_steps": steps,
        "steps_without_repaint": unpainted,
        "page_step_ms": {"median": round(float(np.median(times_ms)), 2),
                         "p95": round(float(np.percentile(times_ms, 95)), 2),
                         "max": round(float(times_ms.max()), 2)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"open_to_first_frame_s": 1.0, "page_step_median_ms": 15, "peak_rss_mb": 600},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--file", type=Path, default=Path(tempfile.gettempdir())
                    / f"eegvlm-bench-{HOURS}h-{N_CH}ch-{SFREQ}hz.edf")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.file, args.steps), indent=2))
        return
    if not args.file.exists():
        # Generating needs ~0.6 GB; do it in its own process so it does not count in RSS.
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import viewer; from pathlib import Path; viewer.make_edf(Path({str(args.file)!r}))"],
                       check=True)
    out = subprocess.run([sys.executable, __file__, "--measure", "--steps", str(args.steps),
                          "--file", str(args.file)], check=True, capture_output=True, text=True)
    sys.stdout.write(out.stdout)


if __name__ == "__main__":
    main()
