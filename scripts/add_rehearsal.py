"""Put the rehearsal epochs of the pooled layer into a model folder (``cohort/rehearsal...``).

Adapting a model to a recording (``eegvlm_desktop/core/staging/adapt.py``) re-fits the
pooled layer and mixes in the epochs the parent's pool weights were fitted on, so every
stage stays represented however one-sided the corrections are. For the shipped model those
are SC4001's standard window (841 epochs; Sleep-EDF, ODC-By 1.0 -- the bundled example night
is from the same recording): the image model's out-of-fold cross-validation answers
(``bench/results/evaluate_cv5_cpu_r2_aug3v3_probs.json``), YASA's log-probabilities and
RobustSleepNet's sequence embeddings on that window, and the expert stages. Derived numbers
only (841 x 110 floats, ~0.4 MB); no signal.

    python scripts/add_rehearsal.py model_weights/default
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FILE = "cohort/rehearsal.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from generalization import OOF, SLEEP_EDF, STAGES, Span, sc4001_expert
    from safetensors.numpy import save_file

    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.cohort import CohortStager

    expert, idx = sc4001_expert()
    oof = json.loads(OOF.read_text())
    pos = {e: i for i, e in enumerate(oof["epochs"])}
    vlm = np.log(np.clip(np.asarray(oof["probs"])[[pos[e] for e in idx]], 1e-6, 1))
    rec = read_recording(SLEEP_EDF / "SC4001E0-PSG.edf")
    roles = pick_roles(rec.ch_names, rec.ch_types)
    first = int(idx.min())
    ev = CohortStager(args.folder).evidence(Span(rec, first, int(idx.max()) - first + 1), roles)
    local = idx - first
    arrays = {"vlm": vlm.astype(np.float32),
              "yasa": ev.log_proba["yasa"][local].astype(np.float32),
              "seq": ev.embedding["rsn"][local].astype(np.float32),
              "y": np.asarray([STAGES.index(s) for s in expert], dtype=np.int64),
              "epochs": np.asarray(idx, dtype=np.int64)}
    path = args.folder / FILE
    save_file(arrays, str(path), metadata={
        "source": "SC4001E0 standard window (Sleep-EDF, ODC-By 1.0): image model out-of-fold "
                  "CV answers, YASA log-probabilities, RobustSleepNet sequence embeddings, "
                  "expert stages"})
    man_path = args.folder / "MANIFEST.json"
    man = json.loads(man_path.read_text(encoding="utf-8"))
    man["files"][FILE] = hashlib.sha256(path.read_bytes()).hexdigest()
    man_path.write_text(json.dumps(man, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(idx)} epochs)")


if __name__ == "__main__":
    main()
