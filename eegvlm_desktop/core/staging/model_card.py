"""Find model folders and summarise their cards for the user, without importing torch.

The GUI lists and describes models before any is loaded (loading is the model worker's
job), so this reads ``MANIFEST.json`` as plain JSON. Checksums and shapes are verified
later, by :func:`eegvlm_desktop.ml.vlm.weights.load_model`, on the worker thread.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.staging.protocol import PROTOCOL_TEXT
from eegvlm_desktop.core.staging.sequence import StageSequenceModel

MANIFEST_FILE = "MANIFEST.json"
#: What a shipped card keeps of each metrics block.
KEEP = ("accuracy", "macro_f1", "kappa", "per_stage_f1", "confusion", "n_epochs")


def default_models_root() -> Path:
    """``model_weights/`` of this checkout (where the bundled default model lives)."""
    return Path(__file__).resolve().parents[3] / "model_weights"


def list_model_folders(root: str | Path | None = None) -> list[Path]:
    """Sub-folders of ``root`` that hold a MANIFEST.json, 'default' first, then by name."""
    root = Path(root) if root is not None else default_models_root()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / MANIFEST_FILE).is_file()]
    return sorted(found, key=lambda p: (p.name != "default", p.name))


def read_manifest_json(folder: str | Path) -> dict[str, Any]:
    """The folder's manifest as a dict; a clear error when it is missing or unreadable."""
    path = Path(folder) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EEGVLMError(f"{Path(folder)} is not a model folder: it has no {MANIFEST_FILE}. "
                          "Choose a folder written by 'eegvlm train'.") from None
    except (OSError, ValueError) as err:
        raise EEGVLMError(f"The model manifest {path} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise EEGVLMError(f"The model manifest {path} is not a JSON object.")
    return data


def _pct(x: Any) -> str:
    return f"{100 * x:.1f} %" if isinstance(x, (int, float)) else "–"


def night_context(manifest: dict[str, Any]) -> StageSequenceModel | None:
    """The folder's night-context model, or None (older folders, or a malformed entry:
    loading the model refuses that one with the reason)."""
    try:
        return StageSequenceModel.from_manifest(manifest)
    except (ValueError, TypeError):
        return None


def context_default(manifest: dict[str, Any]) -> bool:
    """Whether night context is on by default for this model.

    A model whose answer is pooled with cohort stagers (``fusion`` in the manifest) says so
    itself (``fusion.night_context``): they already read the neighbouring epochs, and context
    on top lowered accuracy where the pooling weights were fitted. Other models: on.
    """
    fusion = manifest.get("fusion")
    if isinstance(fusion, dict) and "night_context" in fusion:
        return bool(fusion["night_context"])
    return True


def architecture_text(config: dict[str, Any]) -> str:
    """One paragraph for a card: the EEG-VLM parts and sizes of a ``config.json`` dict."""
    v, e, lm = config["vision"], config["enhance"], config["lm"]
    return (
        "EEG-VLM (Li et al., IEEE JBHI 2026), small: open_clip ViT "
        f"({v['layers']} layers, width {v['width']}, patch {v['patch_size']}) low-level patch "
        f"tokens from layer {config['clip_feature_layer']}; ResNet-18-shaped enhancement CNN "
        f"(width {e['width']}, {', '.join(e['layers'])}) giving high-level tokens; both "
        "projected into a Qwen2-architecture causal LM "
        f"({lm['layers']} layers, hidden {lm['hidden_size']}) with an InfoNCE alignment loss; "
        "trained jointly on chain-of-thought targets from measured evidence and a "
        "direct-answer head for the fast whole-night pass. All weights trained from scratch "
        "here (no pretrained weights).")


def _metric_line(label: str, m: dict[str, Any]) -> str:
    return (f"{label}accuracy {_pct(m.get('accuracy'))}, macro-F1 {_pct(m.get('macro_f1'))}, "
            f"kappa {m.get('kappa', 0):.2f}")


def fusion_lines(manifest: dict[str, Any]) -> list[str]:
    """Card lines of a model pooled with cohort stagers: what, weights, licences, unseen data."""
    fusion = manifest.get("fusion")
    if not isinstance(fusion, dict) or not isinstance(fusion.get("weights"), dict):
        return []
    esc = html.escape
    w = fusion["weights"]
    names = {"vlm": "image model", "rsn": "RobustSleepNet", "yasa": "YASA"}
    weights = ", ".join(f"{names.get(k, k)} {float(v):.2f}" for k, v in w.items())
    lines = [f"<b>Answer pooled</b> with cohort stagers (weights {esc(weights)}; "
             f"night context {'on' if context_default(manifest) else 'off'} by default)"]
    for text in (fusion.get("sources") or {}).values():
        lines.append(f"<small>{esc(str(text))}</small>")
    if fusion.get("inputs"):
        lines.append(f"Inputs: {esc(str(fusion['inputs']))}")
    gen = fusion.get("generalization") or {}
    pooled, yasa = gen.get("default"), gen.get("yasa")
    if pooled and yasa:
        lines.append(_metric_line("On recordings it never saw: ", pooled)
                     + "; " + _metric_line("YASA there: ", yasa))
        if gen.get("split"):
            lines.append(f"<i>{esc(str(gen['split']))}</i>")
    return lines


def card_summary(manifest: dict[str, Any]) -> str:
    """A short HTML description: name, size, data, how it was trained, measured accuracy."""
    card = manifest.get("card") or {}
    esc = html.escape
    name = esc(str(card.get("name", "unnamed model")))
    n = manifest.get("n_parameters") or card.get("n_parameters")
    size = f"{n / 1e6:.1f} M parameters" if isinstance(n, (int, float)) else ""
    data = card.get("training_data") or {}
    recs = ", ".join(str(r) for r in data.get("recordings", [])) or "unknown data"
    epochs = data.get("epochs") or card.get("n_examples")
    training = card.get("training") or {}
    device = training.get("device", "")
    lines = [f"<b>{name}</b> {esc(size)}",
             f"Trained on {esc(recs)}" + (f" ({epochs} epochs)" if epochs else "")
             + (f" on {esc(str(device))}" if device else ""),
             f"Renderer v{esc(str(manifest.get('renderer_version', '?')))}, channels "
             f"{esc(', '.join(manifest.get('channels', [])))}"]
    augment = (training.get("settings") or {}).get("augment") or 0
    if augment:
        # A fine-tuned card keeps its parent's training settings; its own tuning draws no
        # variants, so say whose training they were.
        tuned = "fine_tuning" in card
        lines.append(("Parent augmented" if tuned else "Augmented")
                     + f": {augment} variants per epoch as other labs would record it "
                     "(channel gains, a 50-Hz recording's low-pass, single-channel EEG, "
                     "no EOG/EMG)" + ("; fine-tuned on the reviewed epochs as recorded"
                                      if tuned else ""))
    pooled = fusion_lines(manifest)
    lines += pooled  # first: what a lab should expect on its own nights
    metrics = card.get("metrics") or {}
    ours = (metrics.get("eegvlm_direct_answer") or {}).get("both") or metrics.get("eegvlm")
    if ours and pooled:
        lines.append("<u>The image model alone, inside its training night (same subject):</u>")
    if ours:
        ctx = metrics.get("eegvlm_context")
        line = _metric_line("Each epoch alone: " if ctx else "", ours)
        lines.append(line[0].upper() + line[1:])
        if ctx:
            lines.append(_metric_line("With night context: ", ctx))
        cal = metrics.get("eegvlm_context_calibrated")
        if cal:
            lines.append(_metric_line("With calibrated night context: ", cal))
        yasa = metrics.get("yasa")
        if yasa:
            lines.append(_metric_line("YASA on the same epochs: ", yasa))
        if metrics.get("split"):
            lines.append(f"<i>{esc(str(metrics['split']))}</i>")
    else:
        lines.append("<i>No held-out accuracy recorded for this model.</i>")
    rerun = metrics.get("cv_rerun") or {}
    for key, label in (("eegvlm", "Re-run, each epoch alone"),
                       ("eegvlm_context", "Re-run, with night context")):
        m = rerun.get(key)
        if m:
            lines.append(f"{label}: accuracy {_pct(m.get('accuracy'))}, macro-F1 "
                         f"{_pct(m.get('macro_f1'))}, kappa {m.get('kappa', 0):.2f}")
    if rerun.get("split"):
        lines.append(f"<i>{esc(str(rerun['split']))} (on {esc(str(rerun.get('device')))})</i>")
    seq = night_context(manifest)
    if seq is not None:
        calibrated = (f", answers softened by temperature {seq.temperature:.2f}"
                      if seq.temperature != 1.0 else "")
        lines.append(f"Night context: stage transitions from {seq.n_transitions} expert "
                     f"epoch pairs{calibrated} (toggle with C)")
    parent = card.get("parent_model")
    if parent:
        name = parent.get("name", "?") if isinstance(parent, dict) else parent
        lines.append(f"Fine-tuned from <b>{esc(str(name))}</b>"
                     + (f" on {esc(str(card['date'])[:10])}" if card.get("date") else ""))
    return "<br>".join(lines)


def shipped_card(manifest: dict, config: dict, cv: dict, source: str, stage_counts: dict,
                 device: str) -> dict:
    """The card of a shipped model: what was trained, how, and a CV of the *same* recipe.

    Parameters
    ----------
    manifest : dict
        The model folder's manifest, as ``eegvlm train`` wrote it.
    config : dict
        Its ``config.json``.
    cv : dict
        The JSON of ``eegvlm evaluate --cv blocks:K --cv-models DIR --yasa``.
    source : str
        Where ``cv`` was read from (named on the card and in errors).
    stage_counts : dict
        Epochs per stage in the training data.
    device : str
        What the shipped weights were trained on.

    Raises
    ------
    EEGVLMError
        When ``cv`` is not a complete run of this model's recipe and renderer with YASA beside
        it: a card must never quote another model's numbers.
    """
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
        raise EEGVLMError(f"{source} cannot stand for this model: " + "; ".join(problems))
    history = training.get("history") or []
    k = cv["k"]
    data = card.get("training_data") or {}
    # Sleep-EDF files are named by record id; their licence travels with any model of them.
    recordings = [f"{r} (Sleep-EDF Expanded, PhysioNet, ODC-By 1.0)"
                  if _RECORD_ID.search(str(r)) else str(r) for r in data.get("recordings", [])]
    return {
        "name": card.get("name"),
        "architecture": architecture_text(config),
        "n_parameters": manifest.get("n_parameters"),
        "training_data": {
            "recordings": recordings,
            "hypnograms": data.get("hypnograms"),
            "channel_roles": data.get("channel_roles"),
            "epochs": card.get("n_examples"),
            "window": "standard window (sleep period + 30 min of wake each side)",
            "stage_counts": stage_counts,
            "shipped_model_trained_on": f"all {card.get('n_examples')} window epochs",
        },
        "training": {"device": device, "settings": settings,
                     "seconds": training.get("seconds"),
                     "final_epoch_losses": history[-1] if history else None,
                     "history": history},
        "protocol": PROTOCOL_TEXT,
        "metrics": {
            "split": (f"blocked {k}-fold cross-validation inside {cv.get('recording', 'the night')}"
                      ": contiguous blocks of "
                      f"~{round(cv['epochs'] / k)} epochs, each predicted by a model of the same "
                      "recipe trained on the other blocks only; night context counted from "
                      "those training blocks only"),
            "device": cv.get("device"),
            "source": Path(source).name,
            "renderer_version": cv["renderer_version"],
            "eegvlm": {key: cv["eegvlm"][key] for key in KEEP},
            "eegvlm_context": {key: cv["eegvlm_context"][key] for key in KEEP},
            **({"eegvlm_context_calibrated": {key: cv["eegvlm_context_calibrated"][key]
                                              for key in KEEP},
                "calibration": cv.get("calibration")}
               if "eegvlm_context_calibrated" in cv else {}),
            "yasa": {key: cv["yasa"][key] for key in KEEP if key in cv["yasa"]},
            "yasa_setup": "YASA 0.8.1 zero-shot, EEG Fpz-Cz only, on the same epochs",
            "per_fold": [{**{key: p[key] for key in ("fold", "first_epoch", "last_epoch",
                                                     "epochs")},
                          **{a: {key: round(p[a][key], 4)
                                 for key in ("accuracy", "macro_f1", "kappa")}
                             for a in ("eegvlm", "eegvlm_context", "eegvlm_context_calibrated")
                             if a in p}}
                         for p in cv["per_fold"]],
        },
        "limitations": [
            "One night of one subject: the cross-validated number is within-subject and "
            "flatters the model; zero-shot on other labs it is much weaker (see README).",
            "Trained on the CPU of a 2-core machine; a GPU run of the same recipe differs by "
            "about a point (floating-point order), not by design.",
        ],
    }


# Sleep-EDF record ids (SC4001, ST7011): a file cut from a record keeps its id in its name.
_RECORD_ID = re.compile(r"(S[CT]\d{4})", re.IGNORECASE)


def trained_on(manifest: dict[str, Any], recording: str | Path) -> bool:
    """Whether the card lists ``recording`` (or the Sleep-EDF record it was cut from).

    The app then says that agreement on this night is not an accuracy: the bundled example
    night is cut from the very recording the default model was trained on.
    """
    card = manifest.get("card") or {}
    listed = [str(r) for r in (card.get("training_data") or {}).get("recordings", [])]
    name = Path(recording).name
    if any(name and name in r for r in listed):
        return True
    ids = {m.upper() for m in _RECORD_ID.findall(name)}
    return bool(ids) and any(m.upper() in ids for r in listed for m in _RECORD_ID.findall(r))
