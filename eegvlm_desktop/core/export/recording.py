"""Export a recording file's labels (``eegvlm export``): a fine-tuning folder or a hypnogram.

The labels are a hypnogram file the user names, else the labels saved for the recording by
the app (its sidecar, with per-epoch provenance), else the recording's own hypnogram beside it
(Sleep-EDF naming). They are only read: exporting never saves labels or writes an audit line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from eegvlm_desktop.core.errors import as_sentences
from eegvlm_desktop.core.export.finetune import EPOCH_LENGTH, export_finetune_dataset
from eegvlm_desktop.core.export.finetune_folder import ExportError
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.write import WRITE_FORMATS, write_hypnogram
from eegvlm_desktop.core.recording.deidentify import patient_block, recording_name
from eegvlm_desktop.core.recording.recording import Recording, read_recording

#: What ``eegvlm export --format`` writes: the dataset folder, or one hypnogram file format.
EXPORT_FORMATS: tuple[str, ...] = ("finetune",) + WRITE_FORMATS


def _read_fitted(recording: Recording, path: Path) -> tuple[Hypnogram, list[str]]:
    """A hypnogram file fitted to the recording's grid, as ``dataset.build_night`` does."""
    from eegvlm_desktop.core.hypnogram.fit import check_fit, fit_to_recording
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram

    res = read_hypnogram(path, epoch_length=EPOCH_LENGTH, recording_start=recording.meas_date,
                         recording_duration=recording.duration)
    hyp, notes = res.hypnogram, [f"labels: {path.name} ({res.fmt})"] + list(res.notes)
    n = recording.n_epochs(EPOCH_LENGTH)
    problems = check_fit(hyp, n, EPOCH_LENGTH)
    if problems:
        # Raises HypnogramMismatchError (shown as is) when epochs do not line up at all.
        hyp = fit_to_recording(hyp, n, "crop_or_pad")
        notes.append(f"fitted to the recording (crop_or_pad): {as_sentences(problems)}")
    return hyp, notes


def labels_for_export(recording: Recording, hypnogram_path: str | Path | None = None, *,
                      data_dir: Path | None = None) -> tuple[Hypnogram, list[str]]:
    """The labels to export and notes on where they come from; nothing is written.

    Parameters
    ----------
    recording : Recording
    hypnogram_path : path or None
        A hypnogram file (any format ``read_hypnogram`` reads); None for the saved labels.
    data_dir : Path or None
        Base folder of fallback sidecars (see :class:`~.label_store.LabelStore`).

    Raises
    ------
    ExportError
        No hypnogram was given and the recording has no saved labels nor sibling hypnogram.
    StorageError, HypnogramError
        The saved labels or the hypnogram file cannot be used (their messages say why).
    """
    if hypnogram_path is not None:
        return _read_fitted(recording, Path(hypnogram_path))
    from eegvlm_desktop.core.scoring.document import find_sibling_hypnogram
    from eegvlm_desktop.core.scoring.label_store import LabelStore, recording_fingerprint

    store = LabelStore.for_recording(recording.path, data_dir=data_dir,
                                     fingerprint=recording_fingerprint(recording.path))
    saved = store.load()
    if saved is not None:
        return saved, [f"labels: saved labels in {store.location}"]
    sibling = find_sibling_hypnogram(recording.path)
    if sibling is not None:
        return _read_fitted(recording, sibling)
    raise ExportError(f"{recording.path.name} has no labels to export: it was never scored in "
                      "the app and has no hypnogram beside it. Score it, or name a hypnogram "
                      "file (--hypnogram).")


def export_hypnogram(hypnogram: Hypnogram, out: str | Path, *, fmt: str, scorer: str,
                     recording: Recording | None = None, include_identity: bool = False,
                     overwrite: bool = False) -> Path:
    """Write the labels as a hypnogram file, de-identified unless ``include_identity``.

    ``write_hypnogram`` never sees the patient fields; what it would otherwise carry from the
    recording is its start date (EDF header, JSON ``meas_date``), so that is passed only with
    ``include_identity``. Without it an EDF hypnogram says "Startdate X" (EDF+'s
    "anonymised"), which readers (ours included) take as "starts with the recording".
    With it, an EDF/BDF recording's patient field goes into the EDF header verbatim, and
    the patient fields into the JSON and BIDS provenance.
    The hypnogram's own ``scorer`` (often a file name or a login) is replaced by ``scorer``.
    """
    if fmt not in WRITE_FORMATS:
        raise ExportError(f"Invalid value for the 'fmt' parameter: it must be one of "
                          f"{', '.join(WRITE_FORMATS)}, but got {fmt!r} instead.")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"'{out}' already exists. Choose a new file name, or allow "
                          "replacing it (overwrite=True, --overwrite).")
    hyp = Hypnogram(list(hypnogram.stages), hypnogram.epoch_length, hypnogram.start, scorer,
                    hypnogram.proba, list(hypnogram.provenance))
    provenance: dict = {"exported_by": "EEG-VLM Desktop", "scorer": scorer}
    meas_date = patient = None
    if include_identity and recording is not None:
        meas_date = recording.meas_date
        provenance["recording"] = recording.path.name
        info = getattr(recording, "patient_info", None) or {}
        provenance["patient"] = patient_block(info)
        patient = info.get("patient_field")  # EDF/BDF only: other formats have none
    return write_hypnogram(hyp, out, fmt=fmt, meas_date=meas_date, provenance=provenance,
                           patient=patient)


def export_recording(recording_path: str | Path, out: str | Path, *, fmt: str = "finetune",
                     scorer: str, hypnogram_path: str | Path | None = None,
                     include_identity: bool = False, overwrite: bool = False,
                     data_dir: Path | None = None,
                     progress: Callable[[int, int], None] | None = None
                     ) -> tuple[Path, list[str]]:
    """Open a recording, find its labels and export them (the ``eegvlm export`` command).

    Parameters
    ----------
    recording_path, out : path
        The recording, and the folder (``fmt='finetune'``) or file to write.
    fmt : str
        One of :data:`EXPORT_FORMATS`.
    scorer, include_identity, overwrite, progress
        See :func:`~.export.export_finetune_dataset`.
    hypnogram_path, data_dir
        See :func:`labels_for_export`.

    Returns
    -------
    (Path, list of str)
        What was written, and notes for the user (label source, fitting, counts).
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"Invalid value for the 'fmt' parameter: it must be one of "
                          f"{', '.join(EXPORT_FORMATS)}, but got {fmt!r} instead.")
    rec = read_recording(recording_path)
    hyp, notes = labels_for_export(rec, hypnogram_path, data_dir=data_dir)
    if fmt != "finetune":
        return export_hypnogram(hyp, out, fmt=fmt, scorer=scorer, recording=rec,
                                include_identity=include_identity, overwrite=overwrite), notes
    report = export_finetune_dataset(rec, hyp, out, scorer=scorer, overwrite=overwrite,
                                     include_identity=include_identity, progress=progress)
    counts = ", ".join(f"{s} {n}" for s, n in report.counts.items())
    notes.append(f"{report.n_examples} epochs exported ({counts}) from "
                 f"{recording_name(rec.path.name, report.recording_sha256, include_identity)}")
    return report.folder, notes
