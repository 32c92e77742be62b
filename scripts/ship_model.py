"""Give a model folder trained here by ``eegvlm train`` the full card of a shipped model.

The numbers come from a blocked cross-validation of the *same recipe* on the same night
(``eegvlm evaluate --cv blocks:K --folds ... --save-models DIR``, then all folds scored
together with ``--cv-models DIR --yasa``), never from the shipped weights themselves, which
saw every epoch. The script refuses a CV run of another recipe, another renderer, an
incomplete run, or one without YASA beside it.

    python scripts/ship_model.py model_weights/default
        bench/results/evaluate_cv5_cpu_r2_aug3v3.json

Only MANIFEST.json changes (atomically); the weights and their checksums do not.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from eegvlm_desktop.core.atomic import atomic_write_text
from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.model_card import shipped_card
from eegvlm_desktop.core.staging.sequence import StageSequenceModel, fit_temperature


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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

    try:
        manifest["card"] = shipped_card(manifest, config, cv, args.cv, counts,
                                        f"cpu ({_cpu_name()}), torch {torch.__version__}")
    except EEGVLMError as err:
        raise SystemExit(str(err)) from None
    # The shipped model's night context decodes answers softened by the temperature that
    # calibrates the CV's out-of-fold answers (models of this recipe on epochs they never saw).
    probs = json.loads(Path(cv["probs_file"]).read_text(encoding="utf-8"))
    if probs.get("epochs") is None or len(probs["probs"]) != cv["epochs"]:
        raise SystemExit(f"{cv['probs_file']}: not the {cv['epochs']} out-of-fold answers")
    temperature = round(fit_temperature(np.asarray(probs["probs"], float), probs["expert"]), 3)
    seq = StageSequenceModel.from_manifest(manifest)
    manifest["sequence"] = seq.with_temperature(temperature).to_dict()
    manifest["card"]["metrics"]["shipped_temperature"] = {
        "temperature": temperature,
        "fitted_on": (f"the {cv['epochs']} out-of-fold answers of {Path(args.cv).name} "
                      "(least negative log-likelihood); used by the app's night context")}
    atomic_write_text(folder / "MANIFEST.json",
                      json.dumps(manifest, indent=2, ensure_ascii=False))
    print(json.dumps({k: manifest["card"]["metrics"].get(k) for k in (
        "eegvlm", "eegvlm_context", "eegvlm_context_calibrated", "yasa", "shipped_temperature")
    })[:3000])


if __name__ == "__main__":
    main()
