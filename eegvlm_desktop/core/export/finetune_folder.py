"""The fine-tuning export folder: its format, its PNG images, and reading it back for training.

An export (written by :func:`eegvlm_desktop.core.export.finetune.export_finetune_dataset`) is a plain
folder a person can inspect and any trainer can read::

    images/epoch_00123.png   THE model input image of each exported epoch
    conversations.jsonl      one example per line: image, prompt, reasoning (each step with
                             its verification against the measured evidence), expert stage
    manifest.json            what, from what, by whom, and the sha256 of every other file

:func:`load_finetune_dataset` turns one or more such folders into the
:class:`~eegvlm_desktop.core.export.dataset.NightData` the training code uses, after checking every
file against the manifest. Like :func:`~eegvlm_desktop.core.export.dataset.load_dataset`, it needs
neither MNE nor YASA, so it runs on a bare GPU machine.

PNGs are encoded here with the standard library (zlib) rather than Pillow: the bytes then
depend on nothing but zlib and this code (a Pillow upgrade cannot change them), and the
loader needs no imaging library. Only what this module writes is read back (8-bit RGB,
filter 0, no interlace); the manifest's checksums guarantee that is what the files hold.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.export.dataset import DATASET_FORMAT, NightData
from eegvlm_desktop.core.picture.cot import parse_answer
from eegvlm_desktop.core.picture.rendering import IMAGE_SIZE, RENDERER_VERSION
from eegvlm_desktop.core.stages import STAGES

EXPORT_FORMAT = "eegvlm-finetune-export"
EXPORT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CONVERSATIONS_NAME = "conversations.jsonl"
IMAGES_DIR = "images"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# zlib level 6 (zlib's default): ~13 KB and ~2 ms per image; level 9 saves 7 % for 6x the time.
_PNG_LEVEL = 6


class ExportError(EEGVLMError):
    """An export could not be written, or an export folder cannot be used."""


class ExportCancelled(ExportError):
    """The export was cancelled (``should_stop``); nothing was left in the target folder."""


def image_name(epoch: int) -> str:
    """Relative path of an epoch's image: ``images/epoch_00123.png``."""
    return f"{IMAGES_DIR}/epoch_{int(epoch):05d}.png"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, should_stop: Any = None) -> str:
    """SHA-256 of a file, read in 4 MiB blocks; ``should_stop()`` is polled between blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
            if should_stop is not None and should_stop():
                raise ExportCancelled("The export was cancelled; nothing was written.")
    return h.hexdigest()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def encode_png(image: np.ndarray) -> bytes:
    """An RGB uint8 image ``(h, w, 3)`` as PNG bytes, the same bytes for the same pixels.

    No ancillary chunks (no time stamp, no text), filter 0 on every row: filters that help
    photographs make these mostly-black trace images larger (measured: +25-35 %).
    """
    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("Invalid value for the 'image' parameter: it must be a uint8 array of "
                         f"shape (height, width, 3), but got {img.dtype} {img.shape} instead.")
    h, w, _ = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * 3)], 1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit, RGB, deflate, filter, no ilace
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, _PNG_LEVEL)) + _chunk(b"IEND", b""))


def decode_png(data: bytes, name: str = "image") -> np.ndarray:
    """Pixels of a PNG written by :func:`encode_png`, as uint8 ``(h, w, 3)``.

    Raises
    ------
    ExportError
        The bytes are not such a PNG (the message names ``name``).
    """
    bad = ExportError(f"The image {name} is not a PNG written by EEG-VLM Desktop's export "
                      "(8-bit RGB, unfiltered). Export the recording again.")
    if not data.startswith(_PNG_SIGNATURE):
        raise bad
    pos, idat, header = len(_PNG_SIGNATURE), [], None
    while pos + 8 <= len(data):
        (length,), tag = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if header is None or header[2:] != (8, 2, 0, 0, 0):
        raise bad
    w, h = header[0], header[1]
    try:
        rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + 3 * w)
    except (zlib.error, ValueError):
        raise bad from None
    if rows[:, 0].any():
        raise bad
    return rows[:, 1:].reshape(h, w, 3).copy()


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ExportError(f"The export folder '{folder}' does not exist or is not a folder.")
    if not path.is_file():
        raise ExportError(f"'{folder}' is not a complete fine-tuning export: it has no "
                          f"{MANIFEST_NAME} (an export writes it last). Export it again.")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ExportError(f"The manifest {path} cannot be read: {err}. Export it again.") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path} is not a fine-tuning export manifest (its 'format' is not "
                          f"{EXPORT_FORMAT!r}).")
    if doc.get("version") != EXPORT_VERSION:
        raise ExportError(f"{path} has export format version {doc.get('version')!r}; this "
                          f"version of EEG-VLM Desktop reads version {EXPORT_VERSION}.")
    return doc


def is_export_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a readable export manifest (used before replacing it)."""
    try:
        _read_manifest(Path(folder))
    except ExportError:
        return False
    return True


def _verified(folder: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """Every file the manifest lists, read once and checked against its sha256."""
    out: dict[str, bytes] = {}
    for entry in manifest.get("files", []):
        rel = str(entry.get("path", ""))
        path = folder / rel
        # Listed paths must stay inside the folder: a manifest is data, not instructions.
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ExportError(f"The manifest of '{folder}' lists an invalid path {rel!r}.")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ExportError(f"The export '{folder}' is incomplete: {rel} cannot be read "
                              f"({err.strerror or err}). Export it again.") from None
        if sha256_bytes(data) != entry.get("sha256"):
            raise ExportError(f"The file {rel} in the export '{folder}' does not match its "
                              "checksum in the manifest: it was changed or damaged after the "
                              "export. Export it again.")
        out[rel] = data
    return out


def _read_folder(folder: Path) -> tuple[list[dict[str, Any]], np.ndarray, dict[str, Any]]:
    manifest = _read_manifest(folder)
    if manifest.get("renderer_version") != RENDERER_VERSION:
        raise ExportError(
            f"The export '{folder}' was rendered with renderer version "
            f"{manifest.get('renderer_version')!r}, but this code renders version "
            f"{RENDERER_VERSION!r}: a model trained on it would see other images than it is "
            "shown. Export the recording again.")
    files = _verified(folder, manifest)
    if CONVERSATIONS_NAME not in files:
        raise ExportError(f"The manifest of '{folder}' does not list {CONVERSATIONS_NAME}.")
    rows = []
    for k, line in enumerate(files[CONVERSATIONS_NAME].decode("utf-8").splitlines(), 1):
        where = f"{CONVERSATIONS_NAME} line {k} in '{folder}'"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ExportError(f"{where} is not JSON ({err}).") from None
        if row.get("stage") not in STAGES or parse_answer(row.get("answer", "")) != row["stage"]:
            raise ExportError(f"{where}: the stage must be one of {STAGES} and the answer must "
                              f"end with it, but got {row.get('stage')!r}.")
        if row.get("image") not in files:
            raise ExportError(f"{where}: its image {row.get('image')!r} is not in the manifest.")
        rows.append(row)
    if len(rows) != manifest.get("n_examples"):
        raise ExportError(f"{CONVERSATIONS_NAME} in '{folder}' has {len(rows)} examples, but "
                          f"the manifest announces {manifest.get('n_examples')}.")
    images = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for k, row in enumerate(rows):
        img = decode_png(files[row["image"]], row["image"])
        if img.shape != images.shape[1:]:
            raise ExportError(f"The image {row['image']} in '{folder}' is {img.shape[1]} x "
                              f"{img.shape[0]} pixels; the model's images are {IMAGE_SIZE} x "
                              f"{IMAGE_SIZE}.")
        images[k] = img
    return rows, images, manifest


def load_finetune_dataset(folders: str | Path | Sequence[str | Path]) -> NightData:
    """Read fine-tuning export folders into training examples (one "night" per folder).

    Parameters
    ----------
    folders : path or sequence of paths
        Folders written by :func:`~eegvlm_desktop.core.export.finetune.export_finetune_dataset`.

    Returns
    -------
    NightData
        ``images`` from the PNGs, ``stages`` the expert's stages (the targets), ``answers``
        the reasoning + ``Stage: X`` texts, ``epochs`` the epoch indices in each recording,
        ``night`` the folder's position in ``folders``. ``meta`` has the keys
        :func:`~eegvlm_desktop.core.export.dataset.build_night` writes, plus ``exports`` (one
        summary per folder: recording sha256, scorer, counts, model).

    Raises
    ------
    ExportError
        A folder is missing, incomplete, of another format or renderer version, or one of
        its files does not match its checksum (the message names the file).
    """
    items = [folders] if isinstance(folders, (str, Path)) else list(folders)
    if not items:
        raise ExportError("Invalid value for the 'folders' parameter: it must name at least "
                          "one export folder, but got none.")
    images, stages, answers, epochs, night = [], [], [], [], []
    meta: dict[str, Any] = {"format": DATASET_FORMAT, "renderer_version": RENDERER_VERSION,
                            "source": EXPORT_FORMAT, "recordings": [], "hypnograms": [],
                            "channel_roles": [], "label_mapping": [], "exports": []}
    for k, item in enumerate(items):
        folder = Path(item)
        rows, imgs, man = _read_folder(folder)
        images.append(imgs)
        stages += [r["stage"] for r in rows]
        answers += [r["answer"] for r in rows]
        epochs += [int(r["epoch"]) for r in rows]
        night += [k] * len(rows)
        rec = man.get("recording") or {}
        meta["recordings"].append(rec.get("name", folder.name))
        meta["hypnograms"].append(f"{man.get('scorer', '')} ({folder.name})")
        meta["channel_roles"] += list(rec.get("channel_roles", []))
        meta["exports"].append({key: man.get(key) for key in (
            "created_at", "scorer", "counts", "n_examples", "n_corrected", "model")}
            | {"folder": folder.name, "recording_sha256": rec.get("sha256")})
    return NightData(np.concatenate(images), stages, answers, np.asarray(epochs, np.int64),
                     np.asarray(night, np.int64), meta)


def export_signal(folder: str | Path) -> Any:
    """The whole-night signal an export carries (:mod:`.signal`), checksum verified, or
    None for an export written before exports carried it.

    Raises
    ------
    ExportError
        The folder is not a complete export, or the signal file does not match its
        checksum.
    """
    from eegvlm_desktop.core.export.signal import SIGNAL_NAME, SignalRecording

    folder = Path(folder)
    manifest = _read_manifest(folder)
    entry = next((f for f in manifest.get("files", []) if f.get("path") == SIGNAL_NAME), None)
    if entry is None:
        return None
    try:
        data = (folder / SIGNAL_NAME).read_bytes()
    except OSError as err:
        raise ExportError(f"Could not read {SIGNAL_NAME} in '{folder}': "
                          f"{err.strerror or err}.") from None
    if sha256_bytes(data) != entry.get("sha256"):
        raise ExportError(f"{SIGNAL_NAME} in '{folder}' does not match its checksum in the "
                          "manifest: the export is damaged. Export the recording again.")
    return SignalRecording(data, f"{SIGNAL_NAME} in '{folder}'")
