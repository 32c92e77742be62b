"""Add the night-context stage-transition model to a model folder trained before it existed.

``eegvlm train`` stores it by itself; the shipped default was trained earlier, so its
context was counted afterwards, from the same training data (SC4001's standard window):

    python scripts/add_night_context.py model_weights/default \
        ../shared/data/sleep-edf/SC4001E0-PSG.edf:../shared/data/sleep-edf/SC4001EC-Hypnogram.edf

Only MANIFEST.json changes (atomically); the weights and their checksums do not.

With ``--cv-result FILE`` (the JSON of ``eegvlm evaluate --cv blocks:K ... --yasa``), the
card also records that cross-validation's numbers, each epoch alone and with night context,
under ``metrics.cv_rerun`` (what the app's model panel shows first).
"""
from __future__ import annotations

import argparse
import json

from eegvlm_desktop.core.export.dataset import build_night, concat
from eegvlm_desktop.ml.vlm.weights import read_manifest, write_sequence


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data", nargs="+", metavar="PSG:HYPNOGRAM",
                    help="the nights the model was trained on")
    ap.add_argument("--cv-result", help="JSON written by eegvlm evaluate --cv ... --yasa")
    args = ap.parse_args()
    settings = ((read_manifest(args.model).get("card") or {}).get("training") or {}).get(
        "settings") or {}
    data = concat([build_night(*pair.rsplit(":", 1)) for pair in args.data])
    seq = data.sequence_model(balanced=bool(settings.get("balance", True)))
    write_sequence(args.model, seq)
    if args.cv_result:
        _record_cv(args.model, json.loads(open(args.cv_result, encoding="utf-8").read()),
                   args.cv_result)
    print(json.dumps(seq.to_dict()))


def _record_cv(model: str, cv: dict, source: str) -> None:
    """Put a CV run's numbers (both answers, YASA beside) on the card, atomically."""
    from pathlib import Path

    from eegvlm_desktop.core.atomic import atomic_write_text
    from eegvlm_desktop.core.staging.model_card import KEEP as keep

    if "eegvlm_context" not in cv or "k" not in cv or len(cv.get("folds", [])) != cv["k"]:
        raise SystemExit(f"{source}: not a complete --cv run with night context")
    path = Path(model) / "MANIFEST.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["card"].setdefault("metrics", {})["cv_rerun"] = {
        "split": cv["split"], "device": cv.get("device"), "settings": cv["training_settings"],
        "source": Path(source).name,
        "eegvlm": {k: cv["eegvlm"][k] for k in keep},
        "eegvlm_context": {k: cv["eegvlm_context"][k] for k in keep},
        "how": (f"fold models trained by eegvlm evaluate --cv blocks:{cv['k']} --folds K "
                f"--save-models DIR on {cv.get('device')}, then scored together with "
                "--cv-models DIR --yasa"),
        "per_fold": [{**{k: p[k] for k in ("fold", "first_epoch", "last_epoch", "epochs")},
                      **{a: {k: round(p[a][k], 4) for k in ("accuracy", "macro_f1", "kappa")}
                         for a in ("eegvlm", "eegvlm_context")}} for p in cv["per_fold"]],
        "yasa": {k: cv["yasa"][k] for k in keep if k in cv["yasa"]} if "yasa" in cv else None}
    atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
