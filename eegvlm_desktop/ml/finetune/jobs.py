"""The app's fine-tuning loop as worker-thread jobs: export a scored night, fine-tune on exports.

Plain functions the GUI's long-job worker runs (``should_stop`` and ``progress`` come from the
worker); they open their own copy of the recording. torch is imported inside the functions, so
the window that wires them starts without it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.ml.finetune.holdout import split_holdout


def run_export(recording_path: str, hypnogram, layer: ModelLayer | None, model_folder: str | None,
               out: str, scorer: str, include_identity: bool, *,
               should_stop: Callable[[], bool], progress: Callable[..., None]) -> Any:
    """Worker-thread job: write the fine-tuning dataset of one scored night."""
    from eegvlm_desktop.core.export.finetune import export_finetune_dataset
    from eegvlm_desktop.core.recording.recording import read_recording

    # The folder, not its parsed card: the manifest then records the sha256 of the file.
    manifest = Path(model_folder) if model_folder and layer is not None else None
    return export_finetune_dataset(read_recording(recording_path), hypnogram, Path(out),
                                   model_layer=layer, model_manifest=manifest, scorer=scorer,
                                   include_identity=include_identity,
                                   should_stop=should_stop, progress=progress)


def run_finetune(model_folder: str, folders: list[str], out: str, epochs: int,
                 freeze_vision: bool, holdout: bool = True, *,
                 should_stop: Callable[[], bool], progress: Callable[..., None]) -> str:
    """Worker-thread job: fine-tune ``model_folder`` on export folders, save as ``out``."""
    from eegvlm_desktop.core.errors import EEGVLMError
    from eegvlm_desktop.core.export.finetune_folder import load_finetune_dataset
    from eegvlm_desktop.core.staging.model_card import read_manifest_json
    from eegvlm_desktop.ml.finetune.card import save_finetuned
    from eegvlm_desktop.ml.finetune.run import finetune
    from eegvlm_desktop.ml.finetune.settings import FinetuneSettings

    if Path(out).exists():
        raise EEGVLMError(f"A model named {Path(out).name!r} already exists in "
                          f"{Path(out).parent}: choose another name.")
    data = load_finetune_dataset([Path(f) for f in folders])
    held = None
    if holdout and len(data) >= 10:
        data, held = split_holdout(data)
    settings = FinetuneSettings(epochs=epochs, freeze_vision=freeze_vision)
    result = finetune(model_folder, data, settings, "auto", progress=progress,
                      should_stop=should_stop, eval_data=held)
    if result.stopped:
        raise EEGVLMError("Fine-tuning was cancelled; no model was saved.")
    save_finetuned(result, Path(out), read_manifest_json(model_folder), data.meta, settings)
    return out


def run_adapt(model_folder: str, recording_path: str, labels: dict[int, str], out: str, *,
              should_stop: Callable[[], bool], progress: Callable[..., None]) -> str:
    """Worker-thread job: adapt ``model_folder`` to the recording from the expert's
    ``labels`` and save it as ``out`` (nothing is written if cancelled)."""
    from eegvlm_desktop.core.errors import EEGVLMError
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.adapt import adapt_to_recording

    if Path(out).exists():
        raise EEGVLMError(f"A model named {Path(out).name!r} already exists in "
                          f"{Path(out).parent}: choose another name.")
    try:
        adapt_to_recording(model_folder, read_recording(recording_path), labels, out,
                           name=Path(recording_path).name, should_stop=should_stop,
                           progress=lambda done, total: progress(done, total, {}))
    except InterruptedError:
        raise EEGVLMError("Adapting was cancelled; no model was saved.") from None
    return out


def metrics_line(folder: str) -> str:
    """Accuracy before/after on the held-out epochs, from the new model's card."""
    from eegvlm_desktop.core.errors import EEGVLMError
    from eegvlm_desktop.core.staging.model_card import read_manifest_json

    try:
        metrics = (read_manifest_json(folder).get("card") or {}).get("metrics")
    except EEGVLMError:
        return ""
    if not metrics or not metrics.get("before") or not metrics.get("after"):
        return "No held-out epochs: accuracy was not measured."
    b, a = metrics["before"], metrics["after"]
    return (f"Held-out accuracy {b['accuracy']:.1%} → {a['accuracy']:.1%}, kappa "
            f"{(b.get('kappa') or 0):.2f} → {(a.get('kappa') or 0):.2f} ({metrics['split']})")


def guard_line(folder: str) -> str:
    """What the adaptation's guard chose, in words, from the new model's card."""
    from eegvlm_desktop.core.errors import EEGVLMError
    from eegvlm_desktop.core.staging.model_card import read_manifest_json

    try:
        adaptation = (read_manifest_json(folder).get("card") or {}).get("adaptation") or {}
    except EEGVLMError:
        return ""
    guard = adaptation.get("guard") or {}
    if not guard:
        return ""
    if guard.get("chosen") == "parent" and not guard.get("cv_log_loss"):
        return (f"{guard.get('n_epochs')} labelled epochs are too few to test an adaptation "
                "(12 needed), so the new model answers as its parent does.")
    if guard.get("chosen") == "parent":
        return ("Your labels gave no reliable gain over the current model in "
                "cross-validation, so the new model answers as its parent does.")
    w = adaptation.get("pool_weights") or {}
    parts = [f"{name} {w[key][0]:.2f} → {w[key][1]:.2f}"
             for key, name in (("vlm", "image model"), ("yasa", "YASA"))
             if isinstance(w.get(key), list) and len(w[key]) == 2]
    n = guard.get("n_epochs")
    if not str(guard.get("chosen", "")).startswith("stagers="):
        trust = f"; pool weights: {', '.join(parts)}" if parts else ""
        return (f"Re-fitted RobustSleepNet's classifier and the pool ({guard.get('chosen')}"
                f"{trust}) from {n} epochs.")
    if w.get("rsn_scale"):
        parts.append(f"RobustSleepNet ×{w['rsn_scale']:.2f}")
    trust = f" (pool weights: {', '.join(parts)})" if parts else ""
    return f"Re-weighted the three stagers{trust} from {n} epochs; no stager's answers changed."
