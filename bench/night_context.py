"""Night context (stage-transition decoding) vs each epoch alone, on data the models never saw.

Three measurements, all printed as one JSON object (``--out`` also writes it):

Every CV result is given three ways: each epoch alone, with night context, and with
calibrated night context (each fold's temperature fitted on the other folds' answers).

1. ``sc4001_cv_stored``: the out-of-fold probabilities of the blocked 5-fold CV run stored in
   ``bench/results/ablations_sc4001.json`` (an H100 run: preset "default", 12 epochs, per
   fusion). Each fold's block is decoded with a transition model counted from that fold's
   four *training* blocks only, exactly as ``eegvlm evaluate --cv`` does. The probabilities
   were computed once by models that never saw their block; this only re-decodes them.
2. ``sc4001_fold_models`` (with ``--fold-models DIR``): fold models saved by
   ``eegvlm evaluate --cv blocks:5 --save-models DIR`` (e.g. the CPU-trained fold 2 of the
   shipped "fast" recipe), run now on their held-out block.
3. ``dreams_zero_shot``: the shipped default model on DREAMS excerpt 3 (another lab, C3-A1 at
   50 Hz; never trained on), with the night context stored in its folder (counted from
   SC4001). Skipped when ``../shared/data`` is absent.

YASA 0.8.1 on the same SC4001 epochs (from the shipped model's card) is printed beside (1).

    python bench/night_context.py [--fold-models DIR] [--out bench/results/night_context.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
STORED = REPO / "bench" / "results" / "ablations_sc4001.json"
MODEL = REPO / "model_weights" / "default"


def _short(m: dict) -> dict:
    out = {k: round(float(m[k]), 4) for k in ("accuracy", "macro_f1", "kappa")}
    out["per_stage_f1"] = {s: None if v is None else round(float(v), 4)
                           for s, v in m["per_stage_f1"].items()}
    out["confusion"] = m["confusion"]
    return out


def scores(stages, probs) -> dict:
    from eegvlm_desktop.core.stages import STAGES
    from eegvlm_desktop.core.staging.metrics import stage_metrics

    return _short(stage_metrics(list(stages), [STAGES[i] for i in np.asarray(probs).argmax(1)]))


def stored_cv(data) -> dict:
    """Re-decode the stored out-of-fold probabilities with per-fold transition models."""
    from eegvlm_desktop.ml.evaluate import calibrated_context_probs, context_probs
    from eegvlm_desktop.core.staging.protocol import block_folds

    stored = json.loads(STORED.read_text())
    if list(stored["stages"]) != list(data.stages):
        raise SystemExit(f"{STORED.name} was computed on other epochs than this night's window")
    splits = block_folds(np.arange(len(data)), 5)
    out = {}
    for fusion, run in stored["ablations"].items():
        probs = np.asarray(run["oof_probs"], dtype=float)
        balance = bool(run["settings"].get("balance", True))
        ctx = context_probs(data, probs, splits, list(range(5)), balance)
        cal, temps = calibrated_context_probs(data, probs, splits, list(range(5)), balance)
        out[fusion] = {"settings": run["settings"], "epoch_alone": scores(data.stages, probs),
                       "night_context": scores(data.stages, ctx),
                       "night_context_calibrated": scores(data.stages, cal),
                       "temperatures": temps}
    return out


def fold_models(data, folder: Path) -> dict:
    from eegvlm_desktop.ml.evaluate import (calibrated_context_probs, context_probs,
                                            saved_fold_probs)
    from eegvlm_desktop.core.staging.protocol import block_folds

    splits = block_folds(np.arange(len(data)), 5)
    folds = sorted(int(p.name[4:]) for p in folder.glob("fold*") if p.name[4:].isdigit())
    probs = saved_fold_probs(folder, data, splits, folds, 5, "cpu")
    ctx = context_probs(data, probs, splits, folds, True)
    rows = np.sort(np.concatenate([splits[f][1] for f in folds]))
    stages = [data.stages[i] for i in rows]
    out = {"folds": folds, "epochs": len(rows),
           "epoch_alone": scores(stages, probs[rows]),
           "night_context": scores(stages, ctx[rows])}
    if len(folds) >= 2:
        cal, out["temperatures"] = calibrated_context_probs(data, probs, splits, folds, True)
        out["night_context_calibrated"] = scores(stages, cal[rows])
    return out


def dreams() -> dict:
    from learning_curve import DREAMS, dreams_night

    from eegvlm_desktop.ml.vlm.predict import predict_probs
    from eegvlm_desktop.ml.vlm.weights import load_model, read_sequence

    if not DREAMS.is_dir():
        return {"skipped": f"{DREAMS} is absent"}
    data = dreams_night()
    model, _, manifest = load_model(MODEL, "cpu")
    probs = predict_probs(model, data.images)
    seq = read_sequence(manifest, MODEL)
    return {"recording": "DREAMS excerpt 3 (C3-A1, 50 Hz)", "epochs": len(data),
            "model": "default (never trained on DREAMS)",
            "context_from": seq.source,
            "epoch_alone": scores(data.stages, probs),
            "temperature": seq.temperature,
            "night_context": scores(data.stages, seq.smooth(probs, data.epochs)),
            "night_context_temperature_1": scores(
                data.stages, seq.with_temperature(1.0).smooth(probs, data.epochs))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fold-models", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from learning_curve import sc4001_night

    data = sc4001_night()
    card = json.loads((MODEL / "MANIFEST.json").read_text())["card"]["metrics"]
    result = {"benchmark": "night_context",
              "split": "blocked 5-fold CV inside SC4001 (841 epochs of the standard window): "
                       "each block predicted by a model, and decoded with transitions, "
                       "counted from the other four blocks only",
              "sc4001_cv_stored": stored_cv(data),
              "yasa_0.8.1_same_epochs": _short(card.get("yasa")
                                                or card["yasa_0.8.1_zero_shot_fpz_cz"])}
    if args.fold_models:
        result["sc4001_fold_models"] = fold_models(data, args.fold_models)
    result["dreams_zero_shot"] = dreams()
    text = json.dumps(result)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
