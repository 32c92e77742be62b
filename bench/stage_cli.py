"""``eegvlm stage`` end to end in a fresh process, as a user runs it (JSON out).

Times a cold ``eegvlm stage`` of the example night (imports, reading, the quality gate, the
cohort stagers, rendering, the image model, writing the hypnogram) with ``/usr/bin/time``-like
accounting from the parent: wall seconds, the command's own "seconds" (staging only), and the
child's peak RSS. Repeats ``--runs`` times and reports each run and the median.

    python bench/stage_cli.py [--runs 3] [--psg FILE] [--model FOLDER]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "staging_s": line["seconds"], "epochs": line["epochs"],
            "epochs_per_s_staging": round(line["epochs"] / line["seconds"], 1),
            "peak_rss_mb": round(max(peak, before) / 1024, 1), "sources": line.get("sources"),
            "unscorable": line.get("unscorable", {}).get("epochs")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--psg", default=str(REPO / "resources/example/SC4001-example-PSG.edf"))
    ap.add_argument("--model", default="")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    # Stage a copy: the example's autosaved labels and lock files stay untouched.
    tmp = Path(tempfile.mkdtemp()) / Path(args.psg).name
    tmp.write_bytes(Path(args.psg).read_bytes())
    runs = [one_run(str(tmp), args.model) for _ in range(args.runs)]
    print(json.dumps({
        "command": " ".join(sys.argv), "cpu_count": os.cpu_count(), "runs": runs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_staging_s": statistics.median(r["staging_s"] for r in runs),
        "note": "peak_rss_mb is the largest child RSS so far (ru_maxrss of all children)"},
        indent=1))


if __name__ == "__main__":
    main()
