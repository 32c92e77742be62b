"""A lab's path through the command line: export half a night, ``eegvlm finetune``, restage.

For DREAMS excerpts 2, 3 and 4 (``../shared/data``; another lab, NC-ND: only numbers leave
this machine), as a lab would do it with the installed commands:

1. ``eegvlm export EDF DIR --hypnogram first-half.csv``: the expert's stages of the first
   half of the excerpt (30 epochs) exported for fine-tuning;
2. ``eegvlm finetune --model model_weights/default --data DIR --out MODEL``: the default
   adaptation (the last 20 % of the export checks the fit, then every epoch is fitted);
3. ``eegvlm stage EDF`` with the parent and with MODEL; both are scored on the second half,
   which no step saw.

Conditions: each excerpt as recorded, and re-recorded the way the labs the model will be
judged on record (one central channel, another rate and gain): its central channel alone
(Cz-A1; C3-A1 for excerpt 3), resampled with MNE and scaled, written as a new EDF. The
first half of the re-recorded night is exported and adapted to, exactly as above.

Prints one JSON object (also written to ``bench/results/adapt_cli.json``): per condition and
excerpt, the parent's and the adapted model's accuracy and kappa on the second half, the
guard's choice, the pool weights before -> after and each command's wall time, and the mean
gain per condition. DREAMS was looked at while the adaptation was developed, and the
conditions were chosen by hand: development results, not a blind test.

    python bench/adapt_cli.py [--out bench/results/adapt_cli.json] [--conditions RATE:GAIN ...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "adapt_cli.json"
EPOCH_S = 30


def _run(*args: object) -> tuple[str, float]:
    """Run ``eegvlm ARGS`` with the interpreter running this bench; (stdout, seconds)."""
    t0 = time.perf_counter()
    main = "import sys; from eegvlm_desktop.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", main, *map(str, args)],
                       capture_output=True, text=True, cwd=REPO)
    if r.returncode:
        raise SystemExit(f"eegvlm {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}")
    return r.stdout, round(time.perf_counter() - t0, 2)


def _staged(path: Path, n: int) -> list[str]:
    """Stages by epoch of a hypnogram written by ``eegvlm stage`` (read as the app reads it)."""
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram

    hyp = read_hypnogram(path, recording_duration=n * EPOCH_S).hypnogram
    return [hyp[e] if e < len(hyp) else "?" for e in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--conditions", nargs="+", default=["recorded", "128:2", "256:0.5"],
                    help="'recorded' and/or RATE:GAIN re-recordings (one central channel)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    from generalization import DREAMS, condition

    tmp = Path(tempfile.mkdtemp(prefix="eegvlm-adapt-cli-"))
    result: dict = {"benchmark": "adapt_cli", "protocol": __doc__.split("\n\n")[1].strip(),
                    "conditions_protocol": __doc__.split("\n\n")[2].strip(),
                    "split": "tuning: each excerpt's first 30 epochs (exported); test: its "
                             "last 30 epochs, seen by no step", "conditions": {}}
    for spec in args.conditions:
        cond = condition(spec)
        rows = {}
        for k in (2, 3, 4):
            d = tmp / spec.replace(":", "x") / f"excerpt{k}"
            d.mkdir(parents=True)
            rows[f"dreams{k}"] = _excerpt(k, d, cond, DREAMS)
        result["conditions"][spec] = {
            "recordings": rows,
            "mean_gain_points": {key: round(float(np.mean([r["gain_points"][key]
                                                           for r in rows.values()])), 2)
                                 for key in ("accuracy", "kappa")}}
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps({c: v["mean_gain_points"] for c, v in result["conditions"].items()},
                     indent=1))


def _excerpt(k: int, d: Path, cond: tuple[float, float] | None, dreams: Path) -> dict:
    """Export, adapt, restage and score DREAMS excerpt ``k`` in condition ``cond``."""
    from generalization import STAGES, dreams_stages, dreams_text_to_edf, re_recorded

    from eegvlm_desktop.core.staging.metrics import stage_metrics

    st = dreams_stages(k)
    n, half = len(st), len(st) // 2
    edf = dreams / "excerpt3.edf" if k == 3 else dreams_text_to_edf(k, d)
    if cond is not None:
        edf = re_recorded(edf, d / "re-recorded.edf", *cond)
    (d / "first-half.csv").write_text("onset,duration,stage\n" + "".join(
        f"{EPOCH_S * e},{EPOCH_S},{st[e]}\n" for e in range(half) if st[e] in STAGES),
        encoding="utf-8")
    _, t_export = _run("export", edf, d / "export", "--hypnogram", d / "first-half.csv")
    out, t_tune = _run("finetune", "--model", REPO / "model_weights" / "default", "--data",
                       d / "export", "--out", d / "model", "--no-progress")
    tuned = json.loads(out[out.index("{"):])
    _, t_parent = _run("stage", edf, d / "parent.csv")
    _, t_adapted = _run("stage", edf, d / "adapted.csv", "--model", d / "model")
    truth = [(i, s) for i, s in enumerate(st) if i >= half and s in STAGES]
    row = {}
    for name in ("parent", "adapted"):
        said = _staged(d / f"{name}.csv", n)
        m = stage_metrics([s for _, s in truth], [said[i] for i, _ in truth])
        row[name] = {"accuracy": round(m["accuracy"], 4), "kappa": round(m["kappa"], 4)}
    card = json.loads((d / "model" / "MANIFEST.json").read_text(encoding="utf-8"))["card"]
    row["gain_points"] = {key: round(100 * (row["adapted"][key] - row["parent"][key]), 1)
                          for key in ("accuracy", "kappa")}
    row["guard_chose"] = tuned["guard"]["chosen"]
    row["pool_weights"] = card["adaptation"]["pool_weights"]
    row["epochs_fitted"] = tuned["examples"]
    row["seconds"] = {"export": t_export, "finetune": t_tune, "stage_parent": t_parent,
                      "stage_adapted": t_adapted}
    print(f"dreams{k} {cond}: {row['parent']} -> {row['adapted']}", file=sys.stderr,
          flush=True)
    return row


if __name__ == "__main__":
    main()
