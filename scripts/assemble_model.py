"""Rebuild a model folder from what ``scripts/train_remote.py`` brought back.

Reads ``results.json`` (config, tokenizer files, training history, out-of-fold
probabilities) and the ``shard*.safetensors`` weights, checks the out-of-fold predictions
against the expert labels (``core.metrics``), runs YASA on the same epochs for the
side-by-side numbers, and writes ``model_weights/<name>/`` with ``save_model`` (safetensors,
sha256 manifest, model card).

    python scripts/assemble_model.py RESULTS_DIR model_weights/default \
        --psg ../shared/data/sleep-edf/SC4001E0-PSG.edf \
        --hyp ../shared/data/sleep-edf/SC4001EC-Hypnogram.edf
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.metrics import stage_metrics
from eegvlm_desktop.core.staging.model_card import architecture_text
from eegvlm_desktop.core.staging.protocol import PROTOCOL_TEXT
from eegvlm_desktop.ml.vlm.config import VLMConfig
from eegvlm_desktop.ml.vlm.model import EEGVLM
from eegvlm_desktop.ml.vlm.tokenizer import load_tokenizer
from eegvlm_desktop.ml.vlm.weights import save_model


def oof_metrics(results: dict, fusion: str = "both") -> dict:
    probs = np.asarray(results["cv"][fusion]["oof_probs"])
    pred = [STAGES[i] for i in probs.argmax(1)]
    return stage_metrics(results["stages"], pred)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--psg", required=True)
    ap.add_argument("--hyp", required=True)
    args = ap.parse_args()
    src = Path(args.results)
    results = json.loads((src / "results.json").read_text())
    cfg = VLMConfig.from_dict(results["config"])
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in results["tokenizer_files"].items():
            (Path(tmp) / name).write_text(text)
        tok = load_tokenizer(tmp)
    model = EEGVLM(cfg)
    state = {}
    for shard in sorted(src.glob("shard*.safetensors")):
        state.update(load_file(str(shard)))
    model.load_state_dict(state, strict=True)
    model.eval()

    from eegvlm_desktop.core.hypnogram.read import read_hypnogram
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.core.staging.protocol import standard_window
    from eegvlm_desktop.core.staging.yasa_baseline import compare_with_yasa

    rec = read_recording(args.psg)
    hyp = read_hypnogram(args.hyp, recording_start=rec.meas_date,
                         recording_duration=rec.duration).hypnogram
    idx = standard_window(hyp)
    if list(idx) != results["epochs_index"]:
        raise SystemExit("The results were computed on other epochs than this window.")
    yasa = compare_with_yasa(rec, hyp, idx)
    cv = {f: oof_metrics(results, f) for f in results["cv"]}
    final = results["final"]
    card = {
        "name": Path(args.out).name,
        "architecture": architecture_text(results["config"]),
        "n_parameters": model.n_parameters(),
        "training_data": {
            "recordings": ["Sleep-EDF Expanded SC4001E0-PSG.edf (PhysioNet, ODC-By 1.0)"],
            "epochs": len(results["stages"]),
            "window": "standard window (sleep period + 30 min of wake each side)",
            "stage_counts": {s: results["stages"].count(s) for s in STAGES},
            "shipped_model_trained_on": "all 841 window epochs of SC4001",
        },
        "training": {"device": results["device"], "torch": results["torch"],
                     "settings": final["settings"], "seconds": final["seconds"],
                     "final_epoch_losses": final["history"][-1]},
        "protocol": PROTOCOL_TEXT,
        "metrics": {
            "split": ("blocked 5-fold cross-validation inside SC4001: contiguous blocks of "
                      "~168 epochs, each predicted by a model trained on the other four "
                      "blocks only (same settings as the shipped model)"),
            "eegvlm_direct_answer": {f: {k: m[k] for k in ("accuracy", "macro_f1", "kappa",
                                                          "per_stage_f1", "confusion")}
                                     for f, m in cv.items()},
            "yasa_0.8.1_zero_shot_fpz_cz": {k: yasa[k] for k in (
                "accuracy", "macro_f1", "kappa", "per_stage_f1", "confusion")},
        },
        "limitations": [
            "One night of one subject: the cross-validated number is within-subject.",
            "Not yet measured zero-shot on other labs or montages (e.g. C3-A1).",
            "Reasoned (chain-of-thought) answers were not yet compared with direct answers.",
        ],
    }
    save_model(model, tok, args.out, card)
    print(json.dumps(card["metrics"], indent=1)[:3000])


if __name__ == "__main__":
    main()
