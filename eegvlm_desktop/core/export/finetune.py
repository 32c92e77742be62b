"""Export an expert's labels: as a fine-tuning dataset for the model, or as a hypnogram file.

The fine-tuning export closes the loop between scoring and training: every epoch the expert
scored (or confirmed, or imported) becomes one example whose image is THE model input
(:func:`~eegvlm_desktop.core.picture.rendering.render_night`) and whose target is the expert's stage
with reasoning regenerated from the epoch's measured evidence (:mod:`.cot`), so a corrected
epoch teaches reasoning that argues for the expert's stage, never the model's old answer.
The folder layout, and reading it back for training, are in :mod:`.finetune_folder`.

Exports are de-identified by default (:mod:`.deidentify`), deterministic (the same inputs
give the same bytes; only ``created_at`` in the manifest differs) and atomic
(:mod:`.staged_folder`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from eegvlm_desktop.core.export.finetune_folder import (CONVERSATIONS_NAME, EXPORT_FORMAT,
                                                        EXPORT_VERSION, MANIFEST_NAME,
                                                        ExportCancelled, ExportError, encode_png,
                                                        image_name, is_export_folder, sha256_bytes,
                                                        sha256_file)
from eegvlm_desktop.core.export.staged_folder import StagedFolder
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.picture.cot import PROMPT, format_answer, measured_steps, reasoning_steps
from eegvlm_desktop.core.picture.rendering import IMAGE_SIZE, RENDERER_VERSION
from eegvlm_desktop.core.picture.verify import verify_reasoning
from eegvlm_desktop.core.recording.deidentify import patient_block, recording_name, start_block
from eegvlm_desktop.core.stages import STAGES

# Reading an export back (load_finetune_dataset) lives with the folder format, in
# finetune_folder.py: it needs neither MNE nor YASA.
__all__ = ["export_finetune_dataset", "select_epochs", "ExportReport", "EXPORT_PROVENANCES"]

#: Label provenances that are an expert's word: set, accepted from the model, or imported
#: from an expert's hypnogram file. Model-only labels ('model') teach the model nothing.
EXPORT_PROVENANCES: tuple[str, ...] = ("expert", "accepted", "import")
EPOCH_LENGTH = 30.0  # the model's epoch: PROMPT and the renderer both assume 30 s
_CHUNK = 64  # epochs rendered per call: bounds memory (64 x 150 KB) and the cancel delay


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote.

    Attributes
    ----------
    folder : Path
        The export folder.
    n_examples : int
        Epochs exported (lines of ``conversations.jsonl``).
    counts : dict
        Examples per expert stage (all of W, N1, N2, N3, R).
    n_corrected : int
        Examples where the model had answered and the expert's stage differs.
    recording_sha256 : str
        SHA-256 of the recording file.
    files : tuple of str
        Relative paths of every file written, manifest last.
    """

    folder: Path
    n_examples: int
    counts: dict[str, int]
    n_corrected: int
    recording_sha256: str
    files: tuple[str, ...]


def _fail_param(name: str, allowed: str, got: Any) -> ExportError:
    return ExportError(f"Invalid value for the '{name}' parameter: it must be {allowed}, but "
                       f"got {got!r} instead.")


def select_epochs(hypnogram: Hypnogram, epochs: Iterable[int] | None = None) -> list[int]:
    """The epochs an export takes: expert-given sleep stages, optionally restricted further.

    Parameters
    ----------
    hypnogram : Hypnogram
        The labels.
    epochs : iterable of int or None
        Candidate epochs (0 .. n_epochs - 1); None for all.

    Returns
    -------
    list of int
        Sorted epochs whose label is one of W, N1, N2, N3, R (never UNS or ART) and whose
        provenance is one of :data:`EXPORT_PROVENANCES`.
    """
    n = hypnogram.n_epochs
    if epochs is None:
        cand = range(n)
    else:
        cand = sorted({int(e) for e in epochs})
        if any(not 0 <= e < n for e in cand):
            raise _fail_param("epochs", f"epoch indices in 0..{n - 1}",
                              [e for e in cand if not 0 <= e < n][:5])
    return [e for e in cand if hypnogram[e] in STAGES
            and str(hypnogram.provenance[e]) in EXPORT_PROVENANCES]


def _model_block(model_layer: Any, model_manifest: Any) -> dict[str, Any] | None:
    """Model name and the sha256 of its manifest: which model's answers the export shows."""
    if model_layer is None and model_manifest is None:
        return None
    digest, manifest = None, model_manifest
    if isinstance(model_manifest, (str, Path)):
        path = Path(model_manifest)
        path = path / "MANIFEST.json" if path.is_dir() else path
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw)
        except (OSError, ValueError) as err:
            raise ExportError(f"The model manifest {path} cannot be read: {err}.") from None
        digest = sha256_bytes(raw)
    elif isinstance(model_manifest, dict):
        # A dict in memory has no file bytes: hash its canonical JSON form instead.
        digest = sha256_bytes(json.dumps(model_manifest, sort_keys=True, ensure_ascii=False,
                                         separators=(",", ":"), default=str).encode("utf-8"))
    elif model_manifest is not None:
        raise _fail_param("model_manifest", "a dict, a MANIFEST.json path or a model folder",
                          type(model_manifest).__name__)
    manifest = manifest if isinstance(manifest, dict) else {}
    card = manifest.get("card") if isinstance(manifest.get("card"), dict) else {}
    # The layer's name is the model folder path in the app: keep its last part only, since
    # the path can hold a user name and says nothing more about the model.
    layer_name = Path(str(getattr(model_layer, "model_name", "") or "")).name
    return {"name": str(card.get("name") or layer_name), "manifest_sha256": digest,
            "renderer_version": manifest.get("renderer_version")}


def _finite(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dumps(doc: Any, indent: int | None = None) -> bytes:
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=indent).encode("utf-8")


def _check_inputs(recording: Any, hypnogram: Hypnogram, model_layer: Any, scorer: Any) -> None:
    if not isinstance(scorer, str) or not scorer.strip():
        raise _fail_param("scorer", "the non-empty name of who vouches for the labels", scorer)
    if not isinstance(hypnogram, Hypnogram):
        raise _fail_param("hypnogram", "a Hypnogram", type(hypnogram).__name__)
    n_rec = recording.n_epochs(EPOCH_LENGTH)
    if hypnogram.epoch_length != EPOCH_LENGTH or hypnogram.start != 0 \
            or hypnogram.n_epochs > n_rec:
        raise ExportError(
            f"The hypnogram ({hypnogram.n_epochs} epochs of {hypnogram.epoch_length:g} s from "
            f"{hypnogram.start:g} s) does not fit the recording {recording.path.name} "
            f"({n_rec} epochs of 30 s from 0 s). Fit it to the recording first.")
    if model_layer is not None and len(model_layer) != hypnogram.n_epochs:
        raise _fail_param("model_layer", f"a layer of {hypnogram.n_epochs} epochs (the "
                          "hypnogram's)", f"{len(model_layer)} epochs")


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.parent.is_dir():
        raise ExportError(f"Cannot export to '{out}': its folder '{out.parent}' does not exist.")
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise ExportError(f"'{out}' already exists. Choose a new folder name, or allow "
                          "replacing an earlier export (overwrite=True, --overwrite).")
    if out.is_symlink() or not out.is_dir() or not (is_export_folder(out)
                                                     or not any(out.iterdir())):
        # Replacing means deleting: only ever an earlier export or an empty folder.
        raise ExportError(f"'{out}' exists and is not an earlier fine-tuning export (it has no "
                          f"{MANIFEST_NAME}), so it was left alone. Choose a new folder name.")


def _example(epoch: int, hypnogram: Hypnogram, evidence: Any, model_layer: Any) -> dict:
    stage = hypnogram[epoch]
    steps = reasoning_steps(evidence, stage)  # regenerated: argues for the expert's stage
    answer = format_answer(steps, stage)
    # Each step checked against the same evidence, as the epoch panel checks the model's: a
    # reader of the export sees per step what is measured and what was verified.
    checks = verify_reasoning(answer.split("\n"), evidence,
                              measured=len(measured_steps(evidence)))
    model_stage = probs = alone = None
    if model_layer is not None and (model_stage := model_layer.stage(epoch)) is not None:
        # What the scorer saw (with night context when on) and the epoch's own answer.
        probs = {s: float(p) for s, p in zip(STAGES, model_layer.proba[epoch])}
        alone = {s: float(p) for s, p in zip(STAGES, model_layer.epoch_proba[epoch])}
    image = image_name(epoch)
    return {
        "epoch": epoch, "onset_s": hypnogram.onset(epoch), "image": image, "prompt": PROMPT,
        "reasoning": steps, "stage": stage, "answer": answer,
        "reasoning_checks": [c.to_dict() for c in checks],
        "provenance": str(hypnogram.provenance[epoch]),
        "model_stage": model_stage, "model_probs": probs, "model_probs_epoch_alone": alone,
        "model_night_context": bool(model_layer is not None and model_layer.context_active),
        "corrected": model_stage is not None and model_stage != stage,
        "evidence": _finite(evidence.to_dict()),
        # The same example in the LLaVA conversation layout most VLM trainers read.
        "conversations": [{"from": "human", "value": "<image>\n" + PROMPT},
                          {"from": "gpt", "value": answer}],
    }


def export_finetune_dataset(
        recording: Any, hypnogram: Hypnogram, out_folder: str | Path, *,
        model_layer: Any = None, model_manifest: dict | str | Path | None = None,
        scorer: str, include_identity: bool = False, epochs: Iterable[int] | None = None,
        reasoner: Callable[..., Sequence[Any]] | None = None, overwrite: bool = False,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        created_at: datetime | None = None) -> ExportReport:
    """Write the expert-labelled epochs of a recording as a fine-tuning dataset folder.

    Parameters
    ----------
    recording : Recording
        The opened recording (``path``, channels, samples, ``meas_date``, ``patient_info``).
    hypnogram : Hypnogram
        The expert's labels on the recording's 30-s grid from time 0.
    out_folder : str or Path
        The folder to create; its parent must exist.
    model_layer : ModelLayer or None
        The model's probabilities; gives each example ``model_stage``/``model_probs``.
    model_manifest : dict, path or None
        The model's manifest (dict, ``MANIFEST.json`` or model folder): name and sha256.
    scorer : str
        Who vouches for the labels (stored in the manifest).
    include_identity : bool
        Keep the recording's file name, start date and a ``patient`` block (name, birth date,
        sex, code, recording id). Default False: none of these is written anywhere.
    epochs : iterable of int or None
        Restrict the export to these epochs (see :func:`select_epochs`).
    reasoner : callable or None
        ``reasoner(recording, roles, epoch_indices) -> list[EpochEvidence]``; default
        :func:`~eegvlm_desktop.core.picture.evidence.measure_night`.
    overwrite : bool
        Replace ``out_folder`` if it is an earlier export (or empty); never anything else.
    progress : callable or None
        ``progress(done, total)`` after each epoch image is written.
    should_stop : callable or None
        Polled between steps; when it returns True the export stops, removes what it wrote
        and raises :class:`ExportCancelled`.
    created_at : datetime or None
        The manifest's creation time (default: now, UTC); tests pin it.

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError
        Bad parameters, no epoch to export, the target exists, or a file cannot be written.
    ExportCancelled
        ``should_stop()`` returned True.
    """
    out = Path(out_folder)
    _check_inputs(recording, hypnogram, model_layer, scorer)
    _check_target(out, overwrite)
    idx = select_epochs(hypnogram, epochs)
    if not idx:
        raise ExportError(
            f"Nothing to export from {recording.path.name}: no epoch has an expert stage "
            f"({', '.join(STAGES)}) with provenance {', '.join(EXPORT_PROVENANCES)}"
            + (" among the chosen epochs." if epochs is not None else "."))
    model = _model_block(model_layer, model_manifest)  # a bad manifest fails before the work
    stop = should_stop or (lambda: False)

    def check_stop() -> None:
        if stop():
            raise ExportCancelled(f"The export to '{out}' was cancelled; nothing was written.")

    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.core.export.signal import SIGNAL_NAME, signal_bytes
    from eegvlm_desktop.core.recording.montage import describe_roles, pick_roles

    if reasoner is None:
        from eegvlm_desktop.core.picture.evidence import measure_night as reasoner
    try:
        sha = sha256_file(recording.path, stop)
    except OSError as err:
        raise ExportError(f"Could not read {recording.path}: {err.strerror or err}.") from None
    roles = pick_roles(recording.ch_names, recording.ch_types)
    evidence = list(reasoner(recording, roles, idx))
    if len(evidence) != len(idx):
        raise RuntimeError(f"The reasoner returned {len(evidence)} results for {len(idx)} "
                           "epochs.")
    check_stop()
    notify = progress or (lambda done, total: None)
    notify(0, len(idx))
    examples: list[dict] = []
    files: dict[str, dict] = {}
    try:
        with StagedFolder(out) as staged:

            def put(rel: str, data: bytes) -> None:
                staged.write(rel, data)
                files[rel] = {"path": rel, "bytes": len(data), "sha256": sha256_bytes(data)}

            for k in range(0, len(idx), _CHUNK):
                chunk = idx[k:k + _CHUNK]
                for j, (epoch, image) in enumerate(zip(chunk, render_night(recording, roles,
                                                                           chunk))):
                    put(image_name(epoch), encode_png(image))
                    examples.append(_example(epoch, hypnogram, evidence[k + j], model_layer))
                    notify(len(examples), len(idx))
                    check_stop()
            put(CONVERSATIONS_NAME, b"".join(_dumps(e) + b"\n" for e in examples))
            # The whole night's EEG/EOG: adapting a model re-reads it (core/export/signal.py).
            signal = signal_bytes(recording, roles)
            if signal is not None:
                put(SIGNAL_NAME, signal)
            manifest = _manifest(recording, sha, describe_roles(roles, recording.ch_names),
                                 examples, [files[f] for f in sorted(files)], scorer,
                                 include_identity, model, created_at)
            staged.write(MANIFEST_NAME, _dumps(manifest, indent=1) + b"\n")  # last: "complete"
            check_stop()
            staged.commit(replace=overwrite)
    except OSError as err:
        raise ExportError(f"Could not write the export to '{out}': {err.strerror or err}. "
                          "Nothing was left there.") from err
    counts = manifest["counts"]
    return ExportReport(out, len(examples), counts, manifest["n_corrected"], sha,
                        tuple(f["path"] for f in manifest["files"]) + (MANIFEST_NAME,))


def _manifest(recording: Any, sha: str, roles: list[str], examples: list[dict],
              files: list[dict], scorer: str, include_identity: bool,
              model: dict | None, created_at: datetime | None) -> dict[str, Any]:
    """The manifest: provenance of the export and the sha256 of every other file."""
    when = created_at or datetime.now(timezone.utc)
    stages = [e["stage"] for e in examples]
    provs = [e["provenance"] for e in examples]
    doc: dict[str, Any] = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
        "created_at": when.astimezone(timezone.utc).isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "deidentified": not include_identity,
        "recording": {
            "name": recording_name(recording.path.name, sha, include_identity),
            "sha256": sha, "duration_s": float(recording.duration),
            "n_epochs": int(recording.n_epochs(EPOCH_LENGTH)),
            "start": start_block(recording.meas_date, include_identity),
            "channel_roles": roles},
        "renderer_version": RENDERER_VERSION,
        "image": {"width": IMAGE_SIZE, "height": IMAGE_SIZE, "format": "png"},
        "epoch_length_s": EPOCH_LENGTH,
        "model": model, "scorer": scorer,
        "selection": {"stages": list(STAGES), "provenances": list(EXPORT_PROVENANCES)},
        "n_examples": len(examples),
        "counts": {s: stages.count(s) for s in STAGES},
        "counts_by_provenance": {p: provs.count(p) for p in EXPORT_PROVENANCES},
        "n_with_model": sum(e["model_stage"] is not None for e in examples),
        "n_corrected": sum(bool(e["corrected"]) for e in examples),
        "prompt": PROMPT,
    }
    if include_identity:
        doc["patient"] = patient_block(getattr(recording, "patient_info", None))
    doc["files"] = files
    return doc
