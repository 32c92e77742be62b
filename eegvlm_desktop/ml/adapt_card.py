"""The adapted model's folder and card: the parent's files with the pooled layer replaced.

Split from :mod:`eegvlm_desktop.ml.adapt` (which computes the layer's inputs and fits it):
this module writes what the fit produced, all or nothing, with a card that names the parent,
the data, the settings, how the trust in each stager moved and the held-out before/after.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.export.finetune_folder import sha256_file
from eegvlm_desktop.core.staging.adapt import AdaptReport, AdaptSettings, Head
from eegvlm_desktop.core.staging.model_card import trained_on
from eegvlm_desktop.ml.cohort import COHORT_DIR
from eegvlm_desktop.ml.cohort import RSN_FILE as RSN_NAME
from eegvlm_desktop.ml.vlm.weights import MANIFEST_FILE

RSN_FILE = f"{COHORT_DIR}/{RSN_NAME}"


@dataclass
class AdaptOutcome:
    """What :func:`~eegvlm_desktop.ml.adapt.adapt_and_save` did: the new folder, the
    guard's report and the held-out accuracy before/after (None when too few epochs were
    held out). After a refit (``eegvlm finetune``), ``report`` is the saved model's fit and
    ``check`` the fit that the held-out epochs measured."""

    folder: Path
    report: AdaptReport
    before: dict | None
    after: dict | None
    seconds: float
    #: With a refit: the guard's report of the check fit that ``before``/``after`` measure.
    check: AdaptReport | None = None


def pool_weights(parent: Head, head: Head, chosen: str) -> dict[str, Any]:
    """How much the pool trusts each stager, parent -> adapted, for the card: the image
    model's and YASA's weights, and RobustSleepNet's scale when only the stagers were
    re-weighted (a re-fitted classifier has no single scale)."""
    rsn = None
    if chosen.startswith("stagers=") and np.linalg.norm(parent.layer) > 0:
        rsn = round(float(np.linalg.norm(head.layer) / np.linalg.norm(parent.layer)), 4)
    return {"vlm": [round(parent.a_vlm, 4), round(head.a_vlm, 4)],
            "yasa": [round(parent.a_yasa, 4), round(head.a_yasa, 4)], "rsn_scale": rsn}


def adapted_card(parent_folder: str | Path, manifest: dict, out: str | Path, source: dict,
                 settings: AdaptSettings, o: AdaptOutcome, n_held: int) -> dict[str, Any]:
    """The new model's card: the parent's, with this adaptation's data, settings, guard
    and held-out before/after (``n_held`` epochs) added."""
    card = dict(manifest.get("card") or {})
    data = dict(card.get("training_data") or {})
    recs = [str(r) for r in data.get("recordings") or []]
    data["recordings"] = recs + [r for r in source.get("recordings", []) if r not in recs]
    card.update(name=Path(out).name, date=datetime.now(timezone.utc).isoformat(
        timespec="seconds"), training_data=data)
    card["parent_model"] = {"name": (manifest.get("card") or {}).get("name")
                            or Path(parent_folder).name, "folder": str(parent_folder),
                            "manifest_sha256": sha256_file(Path(parent_folder) / MANIFEST_FILE)}
    card["adaptation"] = {
        "method": "the pooled layer adapted, networks frozen: candidates re-fit "
                  "RobustSleepNet's classifier and the pool weights (class biases kept) or "
                  "only re-weight the three stagers (stages balanced); L2-SP toward the "
                  "parent, rehearsal on the parent's fusion-training epochs; candidate and "
                  "strength chosen by time-blocked cross-validation (or the parent kept): "
                  f"{o.report.chosen}"
                  + ("; training variants of the labelled epochs (gains "
                     f"{list(settings.variant_gains)}, shifts {list(settings.variant_shifts)} s)"
                     " fitted on, each sharing its epoch's weight, never scored, and kept out "
                     "of every fold that scores their epoch" if settings.has_variants else
                     "; no training variants"),
        "data": source, "settings": settings.to_dict(), "guard": o.report.to_dict(),
        "check_guard": None if o.check is None else o.check.to_dict(),
        "seconds": o.seconds}
    if o.after is None:
        card["metrics"] = None
        card["metrics_note"] = "too few labelled epochs to hold some out: nothing measured"
    else:
        split = f"held-out: the last {n_held} labelled epochs in time, never fitted on"
        if o.check is not None:
            split = (f"held-out check: the last {n_held} labelled epochs in time, scored "
                     f"with a fit on the other {o.check.n_epochs}; the saved model was then "
                     f"fitted on all {o.report.n_epochs}, so they are no longer unseen by it")
        seen = [r for r in source.get("recordings", []) if trained_on(manifest, r)]
        if seen:  # e.g. the bundled example night: the parent's image model trained on it
            split += f"; the parent model was trained on {', '.join(seen)}"
        card["metrics"] = {"split": split, "before": o.before, "after": o.after,
                           "eegvlm": o.after}
    return card


def save_adapted(parent_folder: str | Path, manifest: dict, head: Head,
                 out_folder: str | Path, card: dict[str, Any]) -> Path:
    """Write the adapted model folder (all or nothing: built beside it, then renamed)."""
    from safetensors.numpy import load_file, save_file

    src, out = Path(parent_folder), Path(out_folder)
    if out.exists():
        raise EEGVLMError(f"A model named {out.name!r} already exists in {out.parent}: "
                          "choose another name.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name in manifest["files"]:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, tmp / name)
        arrays = load_file(str(src / RSN_FILE))
        rsn_w = float(manifest["fusion"]["weights"]["rsn"])
        weight, bias = head.rsn_classifier(rsn_w)
        arrays["classifier.weight"] = weight.astype(np.float32)
        arrays["classifier.bias"] = bias.astype(np.float32)
        save_file(arrays, str(tmp / RSN_FILE))
        new = json.loads(json.dumps(manifest))
        new["files"][RSN_FILE] = sha256_file(tmp / RSN_FILE)
        fusion = new["fusion"]
        fusion["weights"] = {"vlm": round(head.a_vlm, 6), "rsn": rsn_w,
                             "yasa": round(head.a_yasa, 6)}
        fusion["fitted_on"] = (f"{fusion.get('fitted_on', '')}; then adapted to "
                               f"{', '.join(card['adaptation']['data'].get('recordings', []))}"
                               " (see the card's 'adaptation')")
        new["card"] = card
        (tmp / MANIFEST_FILE).write_text(json.dumps(new, indent=2, ensure_ascii=False,
                                                    default=_json),
                                         encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _json(o: Any) -> Any:
    """numpy scalars and arrays as plain JSON values (the card's numbers)."""
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    raise TypeError(f"not JSON: {type(o).__name__}")
