"""``eegvlm stage`` end to end in a fresh process, as a user runs it (JSON out).

Times a cold ``eegvlm stage`` of the example night (imports, reading, the quality gate, the
cohort stagers, rendering, the image model, writing the hypnogram) with ``/usr/bin/time``-like
accounting from the parent: wall seconds, the command's own "seconds" (staging only), and the
child's own peak RSS (``wait4``: that run alone, interpreter exit included). Repeats
``--runs`` times and reports each run, the medians and the load average around each run (the
numbers mean something only on an idle machine). Prints the JSON and writes it to ``--out``.

    python bench/stage_cli.py [--runs 3] [--psg FILE] [--model FOLDER] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(psg: str, model: str) -> dict:
    out = Path(tempfile.mkdtemp()) / "staged.csv"
    cmd = [sys.executable, "-m", "eegvlm_desktop", "stage", psg, str(out), "--device", "cpu"]
    if model:
        cmd += ["--model", model]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    # wait4, not RUSAGE_CHILDREN: the peak of this run's child alone.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"eegvlm stage failed ({proc.returncode}): {stderr[-2000:]}")
    line = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "staging_s": line["seconds"], "epochs": line["epochs"],
            "epochs_per_s_staging": round(line["epochs"] / line["seconds"], 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "sources": line.get("sources"),
            "unscorable": line.get("unscorable", {}).get("epochs"),
            "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--psg", default=str(REPO / "resources/example/SC4001-example-PSG.edf"))
    ap.add_argument("--model", default="")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench/results/stage_cli.json"))
    args = ap.parse_args()
    # Stage a copy: the example's autosaved labels and lock files stay untouched.
    tmp = Path(tempfile.mkdtemp()) / Path(args.psg).name
    tmp.write_bytes(Path(args.psg).read_bytes())
    runs = [one_run(str(tmp), args.model) for _ in range(args.runs)]
    text = json.dumps({
        "command": " ".join(sys.argv), "cpu_count": os.cpu_count(), "runs": runs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_staging_s": statistics.median(r["staging_s"] for r in runs),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "targets": {"wall_s": 8.0, "peak_rss_mb": 800.0},
        "note": "peak_rss_mb: the run's own child (wait4 ru_maxrss); a cold process each run"},
        indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
