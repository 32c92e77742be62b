"""Give a model folder trained here by ``eegvlm train`` the full card of a shipped model.

The numbers come from a blocked cross-validation of the *same recipe* on the same night
(``eegvlm evaluate --cv blocks:K --folds ... --save-models DIR``, then all folds scored
together with ``--cv-models DIR --yasa``), never from the shipped weights themselves, which
saw every epoch. The script refuses a CV run of another recipe, another renderer, an
incomplete run, or one without YASA beside it.

    python scripts/ship_model.py model_weights/default bench/results/evaluate_cv5_cpu_r2.json

Only MANIFEST.json changes (atomically); the weights and their checksums do not.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from eegvlm_desktop.core.atomic import atomic_write_text
from eegvlm_desktop.core.model_card import architecture_text
from eegvlm_desktop.core.protocol import PROTOCOL_TEXT
from eegvlm_desktop.core.stages import STAGES

KEEP = ("accuracy", "macro_f1", "kappa", "per_stage_f1", "confusion", "n_epochs")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_card(manifest: dict, config: dict, cv: dict, source: str, stage_counts: dict,
               device: str) -> dict:
    """The shipped card: what was trained, how, and the CV of the same recipe."""
    card = manifest.get("card") or {}
    training = card.get("training") or {}
    settings = training.get("settings") or {}
    problems = []
    if cv.get("k") is None or len(cv.get("folds", [])) != cv["k"]:
        problems.append(f"not every fold ran (folds {cv.get('folds')} of k={cv.get('k')})")
    for key in ("eegvlm", "eegvlm_context", "yasa"):
        if key not in cv:
            problems.append(f"no '{key}' result (run --cv-models DIR --yasa)")
    if cv.get("training_settings") != settings:
        problems.append(f"CV recipe {cv.get('training_settings')} is not the model's {settings}")
    if cv.get("settings_differ_from_card"):
        problems.append("the CV ran with --epochs other than the card's")
    if cv.get("renderer_version") != manifest.get("renderer_version"):
        problems.append(f"CV renderer {cv.get('renderer_version')!r} is not the model's "
                        f"{manifest.get('renderer_version')!r}")
    if problems:
        raise SystemExit(f"{source}: " + "; ".join(problems))
    history = training.get("history") or []
    k = cv["k"]
    return {
        "name": card.get("name"),
        "architecture": architecture_text(config),
        "n_parameters": manifest.get("n_parameters"),
        "training_data": {
            "recordings": ["Sleep-EDF Expanded SC4001E0-PSG.edf (PhysioNet, ODC-By 1.0)"],
            "hypnograms": (card.get("training_data") or {}).get("hypnograms"),
            "channel_roles": (card.get("training_data") or {}).get("channel_roles"),
            "epochs": card.get("n_examples"),
            "window": "standard window (sleep period + 30 min of wake each side)",
            "stage_counts": stage_counts,
            "shipped_model_trained_on": f"all {card.get('n_examples')} window epochs of SC4001",
        },
        "training": {"device": device, "settings": settings,
                     "seconds": training.get("seconds"),
                     "final_epoch_losses": history[-1] if history else None,
                     "history": history},
        "protocol": PROTOCOL_TEXT,
        "metrics": {
            "split": (f"blocked {k}-fold cross-validation inside SC4001: contiguous blocks of "
                      f"~{round(cv['epochs'] / k)} epochs, each predicted by a model of the same "
                      "recipe trained on the other blocks only; night context counted from "
                      "those training blocks only"),
            "device": cv.get("device"),
            "source": Path(source).name,
            "renderer_version": cv["renderer_version"],
            "eegvlm": {key: cv["eegvlm"][key] for key in KEEP},
            "eegvlm_context": {key: cv["eegvlm_context"][key] for key in KEEP},
            "yasa": {key: cv["yasa"][key] for key in KEEP if key in cv["yasa"]},
            "yasa_setup": "YASA 0.8.1 zero-shot, EEG Fpz-Cz only, on the same epochs",
            "per_fold": [{**{key: p[key] for key in ("fold", "first_epoch", "last_epoch",
                                                     "epochs")},
                          **{a: {key: round(p[a][key], 4)
                                 for key in ("accuracy", "macro_f1", "kappa")}
                             for a in ("eegvlm", "eegvlm_context")}}
                         for p in cv["per_fold"]],
        },
        "limitations": [
            "One night of one subject: the cross-validated number is within-subject and "
            "flatters the model; zero-shot on other labs it is much weaker (see README).",
            "Trained on the CPU of a 2-core machine; a GPU run of the same recipe differs by "
            "about a point (floating-point order), not by design.",
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="folder written by eegvlm train")
    ap.add_argument("cv", help="JSON of eegvlm evaluate --cv blocks:K --cv-models DIR --yasa")
    args = ap.parse_args()
    folder = Path(args.model)
    manifest = json.loads((folder / "MANIFEST.json").read_text(encoding="utf-8"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cv = json.loads(Path(args.cv).read_text(encoding="utf-8"))
    confusion = cv["eegvlm"]["confusion"]  # rows: expert stage, in STAGES order
    counts = {s: int(sum(row)) for s, row in zip(STAGES, confusion)}
    import torch

    manifest["card"] = build_card(manifest, config, cv, args.cv, counts,
                                  f"cpu ({_cpu_name()}, 2 threads), torch {torch.__version__}")
    atomic_write_text(folder / "MANIFEST.json",
                      json.dumps(manifest, indent=2, ensure_ascii=False))
    print(json.dumps({k: manifest["card"]["metrics"][k] for k in ("eegvlm", "eegvlm_context",
                                                                   "yasa")})[:2000])


if __name__ == "__main__":
    main()
