"""Put the cohort stagers into a model folder: RobustSleepNet (safetensors) and YASA (text).

Run once per shipped model, on a developer machine that has ``../shared/models`` and YASA
installed. Nothing here runs in the app: the app only reads the files this writes.

* RobustSleepNet: ``../shared/models/robustsleepnet-sleep-edf/state_dict.npz`` (plain arrays,
  read with ``allow_pickle=False``) -> ``cohort/robustsleepnet.safetensors`` + its MIT LICENSE.
* YASA 0.8.1's EEG-only classifier: YASA ships it as a joblib (pickle) file. This script
  unpickles that one file from the installed yasa package -- code the project already
  trusts and runs -- and writes it in LightGBM's own text model format, which the app loads
  with ``lightgbm.Booster(model_file=...)``: the app never unpickles anything. It checks
  that the text model gives the same probabilities as the original on random features.
* The fusion weights (``--weights vlm=0.12 rsn=0.40 yasa=0.69``) and where they were fitted.

Every file is added to ``MANIFEST.json`` with its sha256, so ``load_model`` verifies them.

    python scripts/add_cohort.py model_weights/default --weights vlm=0.1 rsn=0.4 yasa=0.7 \
        --fitted-on "..."
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Where ../shared lives (EEGVLM_SHARED overrides it on a machine that keeps it elsewhere).
SHARED = Path(os.environ.get("EEGVLM_SHARED", REPO.parent / "shared"))
RSN = SHARED / "models" / "robustsleepnet-sleep-edf"
COHORT = "cohort"
RSN_LICENCE = ("RobustSleepNet weights: MIT License, Copyright (c) 2021 Dreem "
               "(Dreem-Organization/RobustSleepNet, commit c8ff3f6, pretrained_model/, experiment "
               "0dfcee73-055a-4c4d-929c-8fdf630e14f1). Trained on 943 nights of MESA, MrOS, SHHS "
               "(NSRR), MASS and Dreem DOD-H/DOD-O; no Sleep-EDF night. The MIT licence does not "
               "speak for those data sets' own terms.")
YASA_LICENCE = ("YASA 0.8.1 EEG-only sleep-staging classifier (LightGBM), BSD-3-Clause, "
                "Copyright (c) 2018 Raphael Vallat; trained on ~3,000 NSRR nights (Vallat & "
                "Walker, eLife 2021). Converted from clf_eeg_lgb_0.5.0.joblib to LightGBM text.")


INPUTS = ("any EEG derivation(s), one channel is enough; EOG and chin EMG optional; any rate "
          ">= 50 Hz (YASA reads < 80 Hz resampled to 100 Hz); any gain for the cohort stagers "
          "(the image model draws at fixed µV scales); YASA needs at least 5 minutes")


def loro_table(res: dict) -> dict:
    """The card's copy of the leave-one-recording-out result: pooled and per recording."""
    keep = ("accuracy", "macro_f1", "kappa")
    per = {name: {ans: {k: row["answers"][ans][k] for k in keep}
                  for ans in ("default", "image_alone", "yasa")}
           for name, row in res["recordings"].items()}
    return {"default": {k: res["pooled"]["default"][k] for k in keep},
            "yasa": {k: res["pooled"]["yasa"][k] for k in keep},
            "image_alone": {k: res["pooled"]["image_alone"][k] for k in keep},
            "per_recording": per,
            "split": ("leave-one-recording-out over SC4001's standard window and DREAMS excerpts "
                      "2, 3, 4 (1,021 epochs pooled); each scored by models that never saw it "
                      "(bench/results/generalization.json)")}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def add_rsn(out: Path) -> None:
    from safetensors.numpy import save_file

    with np.load(RSN / "state_dict.npz", allow_pickle=False) as z:
        arrays = {k: np.ascontiguousarray(z[k], dtype=np.float32) for k in z.files}
    save_file(arrays, str(out / "robustsleepnet.safetensors"))
    shutil.copyfile(RSN / "LICENSE", out / "LICENSE-robustsleepnet")


def add_yasa(out: Path) -> None:
    import warnings

    import joblib
    import lightgbm
    import yasa

    src = Path(yasa.__file__).parent / "classifiers" / "clf_eeg_lgb_0.5.0.joblib"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's version-mismatch note on unpickling
        clf = joblib.load(src)
    clf.booster_.save_model(str(out / "yasa_eeg.txt"))
    booster = lightgbm.Booster(model_file=str(out / "yasa_eeg.txt"))
    x = np.random.default_rng(0).normal(size=(200, len(clf.feature_name_)))
    diff = float(np.abs(booster.predict(x) - clf.predict_proba(x)).max())
    if diff > 1e-9:
        sys.exit(f"The text model differs from YASA's classifier by {diff}; not written.")
    meta = {"classes": [str(c) for c in clf.classes_], "features": list(clf.feature_name_),
            "source": f"yasa {yasa.__version__} classifiers/{src.name}",
            "source_sha256": _sha(src), "max_abs_difference_checked": diff,
            "licence": YASA_LICENCE}
    (out / "yasa_eeg.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    lic = Path(yasa.__file__).parent.parent / f"yasa-{yasa.__version__}.dist-info" / "licenses"
    shutil.copyfile(lic / "LICENSE", out / "LICENSE-yasa")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--weights", nargs="+", required=True, metavar="SOURCE=W")
    ap.add_argument("--fitted-on", required=True)
    ap.add_argument("--extra", default="{}", help="JSON merged into the fusion block")
    ap.add_argument("--generalization", type=Path, metavar="JSON", help="bench/generalization.py "
                    "result: its leave-one-recording-out table goes on the card")
    args = ap.parse_args()
    out = args.folder / COHORT
    out.mkdir(exist_ok=True)
    add_rsn(out)
    add_yasa(out)
    weights = {k: float(v) for k, v in (w.split("=", 1) for w in args.weights)}
    man_path = args.folder / "MANIFEST.json"
    man = json.loads(man_path.read_text(encoding="utf-8"))
    for p in sorted(out.iterdir()):
        man["files"][p.relative_to(args.folder).as_posix()] = _sha(p)
    man["fusion"] = {"weights": weights, "fitted_on": args.fitted_on,
                     "sources": {"rsn": RSN_LICENCE, "yasa": YASA_LICENCE},
                     "inputs": INPUTS, **json.loads(args.extra)}
    if args.generalization:
        man["fusion"]["generalization"] = loro_table(json.loads(
            args.generalization.read_text(encoding="utf-8")))
    man_path.write_text(json.dumps(man, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(man["fusion"], indent=1))


if __name__ == "__main__":
    main()
