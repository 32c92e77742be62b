"""Does the model learn from an expert's corrections? A learning curve on the real night (JSON).

Protocol (every number comes from epochs the tuned model never trained on):

* The parent is a model that never saw block ``--block`` of the SC4001 standard window: by
  default the fold model kept by ``eegvlm evaluate --cv blocks:5 --folds 2 --save-models
  .devdata/cv2`` (trained on blocks 0, 1, 3, 4). The shipped default model cannot be used on
  SC4001: it was trained on every epoch of it.
* That block is cut in two contiguous halves in time: the first half is the *tuning* block,
  the second half the *test* block, never used for tuning.
* An expert is simulated reviewing a growing share (0, 25, 50, 100 %) of the tuning block: a
  random subset (per seed) of its epochs gets the real expert label (confirming the model
  where it was right, correcting it where it was wrong), with reasoning targets regenerated
  from the measured evidence for that label, as the app's export does.
* The parent is fine-tuned on the reviewed epochs (``ml/finetune/run.py``, same settings for
  every point) and scored on the test block: accuracy, macro-F1, kappa (the direct answer,
  as the app's whole-night pass). Share 0 is the parent itself.

    python bench/learning_curve.py [--parent DIR] [--block 2] [--seeds 0 1 2] [--epochs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "sleep-edf"
CACHE = REPO / ".devdata" / "sc4001.npz"


def sc4001_night():
    """The SC4001 standard window as training examples (cached: building takes ~15 s)."""
    from eegvlm_desktop.core.errors import EEGVLMError
    from eegvlm_desktop.core.export.dataset import build_night, load_dataset, save_dataset

    if CACHE.exists():
        try:
            return load_dataset(CACHE)
        except EEGVLMError:  # rendered by another renderer version: rebuild it
            pass
    data = build_night(SHARED / "SC4001E0-PSG.edf", SHARED / "SC4001EC-Hypnogram.edf")
    CACHE.parent.mkdir(exist_ok=True)
    save_dataset(data, CACHE)
    return data


DREAMS = REPO.parent / "shared" / "data" / "dreams-spindles"
#: DREAMS' usual R&K codes (5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4), not verified against the
#: database documentation here.
DREAMS_CODES = {5: "W", 4: "R", 3: "N1", 2: "N2", 1: "N3", 0: "N3"}


def dreams_stages() -> list[str]:
    """The 30-s stages of DREAMS excerpt 3: each takes the majority of its six 5-s epochs."""
    from collections import Counter

    codes = [int(x) for x in (DREAMS / "Hypnogram_excerpt3.txt").read_text().split()[1:]]
    return [Counter(DREAMS_CODES[c] for c in codes[i:i + 6]).most_common(1)[0][0]
            for i in range(0, len(codes) - 5, 6)]


def dreams_night():
    """DREAMS excerpt 3 (another lab: C3-A1 at 50 Hz) as 60 scored 30-s epochs.

    The data never leave this machine (the licence forbids redistribution): only numbers do.
    """
    import tempfile

    from eegvlm_desktop.core.export.dataset import build_night

    stages = dreams_stages()
    tmp = Path(tempfile.mkdtemp()) / "excerpt3.csv"
    tmp.write_text("onset,duration,stage\n" + "".join(
        f"{30 * i},30,{s}\n" for i, s in enumerate(stages)))
    return build_night(DREAMS / "excerpt3.edf", tmp, epoch_indices=np.arange(len(stages)))


def _metrics(model, data, idx) -> dict:
    from eegvlm_desktop.core.stages import STAGES
    from eegvlm_desktop.core.staging.metrics import stage_metrics
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    pred = [STAGES[i] for i in predict_probs(model, data.images[idx]).argmax(1)]
    m = stage_metrics([data.stages[i] for i in idx], pred)
    return {k: m[k] for k in ("accuracy", "macro_f1", "kappa")}


def _summary(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": round(float(a.mean()), 4), "std": round(float(a.std(ddof=1)), 4)
            if a.size > 1 else 0.0, "values": [round(float(v), 4) for v in a]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parent", default=str(REPO / ".devdata" / "cv2" / "fold2"))
    ap.add_argument("--block", type=int, default=2, help="the block the parent never saw")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data", choices=("sc4001", "dreams"), default="sc4001",
                    help="dreams: parent = the shipped default model (never saw DREAMS), "
                         "tuning = the first half of excerpt 3, test = the second half")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from eegvlm_desktop.core.staging.protocol import block_folds
    from eegvlm_desktop.ml.finetune.run import finetune
    from eegvlm_desktop.ml.finetune.settings import FinetuneSettings
    from eegvlm_desktop.ml.vlm.weights import load_model

    torch.set_num_threads(args.threads)
    if args.data == "dreams":
        if args.parent == ap.get_default("parent"):
            args.parent = str(REPO / "model_weights" / "default")
        data = dreams_night()
        block = np.arange(len(data))
        where = "DREAMS excerpt 3 (60 epochs, 30-s majority of the 5-s R&K hypnogram)"
    else:
        data = sc4001_night()
        block = None
        where = None
    parent, _, manifest = load_model(args.parent, "cpu")
    held = manifest.get("card", {}).get("training_data", {}).get("held_out_block", {})
    if args.data == "dreams":
        held = {"recording": "DREAMS excerpt 3 was never in any training data"}
    elif held and held.get("fold") != args.block:
        raise SystemExit(f"--parent never saw block {held.get('fold')}, not --block "
                         f"{args.block}: pass the matching fold model.")
    if not held and args.data != "dreams":
        print("warning: the parent's card does not say which block it never saw; the "
              "numbers are only honest if it never trained on this night", file=sys.stderr)
    if block is None:
        block = block_folds(np.arange(len(data)), args.k)[args.block][1]
    half = len(block) // 2
    tune, test = block[:half], block[half:]
    parent_scores = _metrics(parent, data, test)
    curve = []
    t0 = time.perf_counter()
    for share in args.shares:
        rows = []
        for seed in args.seeds:
            if share == 0:
                rows.append(parent_scores)
                continue
            rng = np.random.default_rng(seed)
            n = max(1, int(round(share * len(tune))))
            reviewed = np.sort(rng.choice(tune, size=n, replace=False))
            settings = FinetuneSettings(epochs=args.epochs, lr=args.lr, seed=seed)
            result = finetune(args.parent, data.subset(reviewed), settings, "cpu")
            rows.append(_metrics(result.model, data, test))
            print(json.dumps({"share": share, "seed": seed, "reviewed": int(n), **rows[-1]}),
                  file=sys.stderr, flush=True)
        curve.append({"share_corrected": share,
                      "reviewed_epochs": int(round(share * len(tune))),
                      **{k: _summary([r[k] for r in rows]) for k in rows[0]}})
    print(json.dumps({
        "benchmark": "learning_curve",
        "parent": str(Path(args.parent).name), "parent_never_saw": held or None,
        "split": (where or f"SC4001 standard window, blocked {args.k}-fold block "
                  f"{args.block}") + (f" ({len(block)} epochs, never seen by the parent): "
                  f"tuning = its first "
                  f"{len(tune)} epochs (epochs {int(data.epochs[tune[0]])}-"
                  f"{int(data.epochs[tune[-1]])}), test = its last {len(test)} epochs "
                  f"(epochs {int(data.epochs[test[0]])}-{int(data.epochs[test[-1]])}), "
                  "never used for tuning"),
        "settings": {"epochs": args.epochs, "lr": args.lr, "seeds": args.seeds},
        "curve": curve, "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
