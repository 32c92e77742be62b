"""Find model folders and summarise their cards for the user, without importing torch.

The GUI lists and describes models before any is loaded (loading is the model worker's
job), so this reads ``MANIFEST.json`` as plain JSON. Checksums and shapes are verified
later, by :func:`eegvlm_desktop.core.vlm.weights.load_model`, on the worker thread.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from .errors import EEGVLMError
from .sequence import StageSequenceModel

MANIFEST_FILE = "MANIFEST.json"


def default_models_root() -> Path:
    """``model_weights/`` of this checkout (where the bundled default model lives)."""
    return Path(__file__).resolve().parents[2] / "model_weights"


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


def architecture_text(config: dict[str, Any], pretrained: bool = False) -> str:
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
        "direct-answer head for the fast whole-night pass. "
        + ("Starts from pretrained weights." if pretrained else
           "All weights trained from scratch here (no pretrained weights)."))


def _metric_line(label: str, m: dict[str, Any]) -> str:
    return (f"{label}accuracy {_pct(m.get('accuracy'))}, macro-F1 {_pct(m.get('macro_f1'))}, "
            f"kappa {m.get('kappa', 0):.2f}")


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
    metrics = card.get("metrics") or {}
    ours = (metrics.get("eegvlm_direct_answer") or {}).get("both") or metrics.get("eegvlm")
    if ours:
        ctx = metrics.get("eegvlm_context")
        line = _metric_line("Each epoch alone: " if ctx else "", ours)
        lines.append(line[0].upper() + line[1:])
        if ctx:
            lines.append(_metric_line("With night context: ", ctx))
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
        lines.append(f"Night context: stage transitions from {seq.n_transitions} expert "
                     "epoch pairs (toggle with C)")
    parent = card.get("parent_model")
    if parent:
        name = parent.get("name", "?") if isinstance(parent, dict) else parent
        lines.append(f"Fine-tuned from <b>{esc(str(name))}</b>"
                     + (f" on {esc(str(card['date'])[:10])}" if card.get("date") else ""))
    return "<br>".join(lines)


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
