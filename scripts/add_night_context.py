"""Add the night-context stage-transition model to a model folder trained before it existed.

``eegvlm train`` stores it by itself; the shipped default was trained earlier, so its
context was counted afterwards, from the same training data (SC4001's standard window):

    python scripts/add_night_context.py model_weights/default \
        ../shared/data/sleep-edf/SC4001E0-PSG.edf:../shared/data/sleep-edf/SC4001EC-Hypnogram.edf

Only MANIFEST.json changes (atomically); the weights and their checksums do not.
"""
from __future__ import annotations

import argparse
import json

from eegvlm_desktop.core.dataset import build_night, concat
from eegvlm_desktop.core.vlm.weights import read_manifest, write_sequence


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data", nargs="+", metavar="PSG:HYPNOGRAM",
                    help="the nights the model was trained on")
    args = ap.parse_args()
    settings = ((read_manifest(args.model).get("card") or {}).get("training") or {}).get(
        "settings") or {}
    data = concat([build_night(*pair.rsplit(":", 1)) for pair in args.data])
    seq = data.sequence_model(balanced=bool(settings.get("balance", True)))
    write_sequence(args.model, seq)
    print(json.dumps(seq.to_dict()))


if __name__ == "__main__":
    main()
