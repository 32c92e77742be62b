"""The card of a fine-tuned model: parent, data, settings, and held-out metrics only."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from eegvlm_desktop.core.staging.model_card import trained_on
from eegvlm_desktop.ml.finetune.settings import FinetuneResult, FinetuneSettings
from eegvlm_desktop.ml.vlm.weights import WEIGHTS_FILE, read_sequence, save_model



def _recording_names(meta: dict) -> list[str]:
    """Recording names of a data ``meta`` (plain names, or dicts with a 'name')."""
    return [str(r.get("name", r)) if isinstance(r, dict) else str(r)
            for r in meta.get("recordings") or []]


def save_finetuned(result: FinetuneResult, out_folder: str | Path, parent_manifest: dict,
                   data_meta: dict, settings: FinetuneSettings) -> Path:
    """Write the fine-tuned model as a normal model folder; returns the manifest path.

    The card names the parent (name, folder, sha256 of its ``model.safetensors``), the
    fine-tuning data (``data_meta`` as the export loader gives it, plus examples per stage),
    the UTC date, settings and history, and the direct answer's metrics before and after on
    the held-out ``eval_data`` with the split named, or ``null`` and a note without it.
    ``training_data.recordings`` lists the parent's and the fine-tuning recordings, so a
    later evaluation on any of them is flagged as not held out.
    """
    out = Path(out_folder)
    # The parent's night context is kept: a few corrected epochs are too few transitions
    # to re-count the stage dynamics of sleep from.
    parent_sequence = read_sequence(parent_manifest, result.parent_folder)
    parent_card = parent_manifest.get("card") or {}
    parent_data = parent_card.get("training_data") or {}
    parent_recs = [str(r) for r in parent_data.get("recordings") or []]
    ft_recs = _recording_names(data_meta)
    card: dict[str, Any] = {
        "name": out.name,
        "parent_model": {
            "name": parent_card.get("name") or Path(result.parent_folder).name,
            "folder": result.parent_folder,
            "model_sha256": (parent_manifest.get("files") or {}).get(WEIGHTS_FILE),
            "renderer_version": parent_manifest.get("renderer_version")},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data": {
            "recordings": parent_recs + [r for r in ft_recs if r not in parent_recs],
            "note": "the parent model's training recordings, then the fine-tuning ones"},
        "parent_training_data": parent_data,
        "training": {"settings": (parent_card.get("training") or {}).get("settings"),
                     "note": "the parent model's training settings; see 'fine_tuning'"},
        "fine_tuning_data": {**data_meta, **result.data_summary},
        "n_examples": result.data_summary["n_examples"],
        "fine_tuning": {"settings": settings.to_dict(), "history": result.history,
                        "stopped": result.stopped, "steps_done": result.steps_done,
                        "total_steps": result.total_steps, "device": result.device,
                        "num_processes": result.num_processes, "seconds": result.seconds},
    }
    if result.metrics_after is None:
        card["metrics"] = None
        card["metrics_note"] = ("no held-out data was given, so no accuracy was measured "
                                "(none is ever measured on the fine-tuning data itself)")
        return save_model(result.model, result.tokenizer, out, card, parent_sequence)
    ev = result.eval_summary or {}
    eval_recs = _recording_names(ev.get("meta") or {})
    split = (f"held-out data: {ev.get('n_examples')} epochs"
             + (f" of {', '.join(eval_recs)}" if eval_recs else "")
             + ", none of whose images was in the fine-tuning data")
    if set(eval_recs) & set(ft_recs):
        split += "; other epochs of the same recording(s) were fine-tuned on"
    seen = [r for r in eval_recs if trained_on(parent_manifest, r)]
    if seen:
        split += f"; the parent model was trained on {', '.join(seen)}"
    # 'eegvlm' (= after) and 'split' are what the app's model list shows.
    card["metrics"] = {"split": split, "eval_data": ev, "before": result.metrics_before,
                       "after": result.metrics_after, "eegvlm": result.metrics_after}
    return save_model(result.model, result.tokenizer, out, card, parent_sequence)
