"""Label sidecar: location (next to the recording or fallback), round trip, and refusals."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.atomic import TEMP_SUFFIX
from eegvlm_desktop.core.errors import StorageError
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.scoring import label_store
from eegvlm_desktop.core.scoring.label_store import (LabelStore, SidecarMismatchError,
                                                     folder_is_writable, recording_fingerprint)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    folder = tmp_path / "recs"
    folder.mkdir()
    rec = folder / "night1.edf"
    rec.write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    return rec


def scored(n: int = 12) -> Hypnogram:
    h = Hypnogram.unscored(n, scorer="ana")
    h.set_stages(range(4), ["W", "N1", "N2", "N3"], source="model")
    h.set_stages([5, 6], "R", source="expert")
    proba = np.full((n, 5), np.nan)
    proba[:4] = np.eye(5)[:4] * 0.7 + 0.06
    h.set_proba(list(range(n)), proba)
    return h


def make_read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.chmod(folder, 0o555)
    if IS_ROOT:
        # root ignores permission bits, so chmod cannot make the folder unwritable; stand in
        # for a read-only share by making the writability probe say no for this folder.
        real = label_store.folder_is_writable
        monkeypatch.setattr(label_store, "folder_is_writable",
                            lambda f: False if Path(f) == folder else real(f))


# ---------------------------------------------------------------------- fingerprint
def test_fingerprint_is_size_and_sha1_of_first_64k(recording):
    data = recording.read_bytes()
    expected = f"{len(data)}:{hashlib.sha1(data[:65536]).hexdigest()}"
    assert recording_fingerprint(recording) == expected


def test_fingerprint_changes_with_header_or_size(recording):
    fp = recording_fingerprint(recording)
    data = bytearray(recording.read_bytes())
    data[100] ^= 0xFF
    recording.write_bytes(bytes(data))
    fp_header = recording_fingerprint(recording)
    recording.write_bytes(bytes(data) + b"\0")
    assert len({fp, fp_header, recording_fingerprint(recording)}) == 3


def test_fingerprint_of_missing_file_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="nope.edf"):
        recording_fingerprint(tmp_path / "nope.edf")


# ---------------------------------------------------------------------- location
def test_sidecar_next_to_writable_recording(recording, tmp_path):
    store = LabelStore.for_recording(recording, fingerprint="fp", data_dir=tmp_path / "data")
    assert store.location == recording.parent / "night1.edf.eegvlm.json"
    assert store.audit.path == recording.parent / "night1.edf.eegvlm-audit.jsonl"
    assert not store.is_fallback
    assert not (tmp_path / "data").exists()


def test_fallback_to_data_dir_when_folder_is_read_only(recording, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    make_read_only(recording.parent, monkeypatch)
    try:
        store = LabelStore.for_recording(recording, fingerprint="fp", data_dir=data_dir)
        key = hashlib.sha1(str(recording.resolve()).encode()).hexdigest()[:16]
        assert store.is_fallback
        assert store.location == data_dir / key / "night1.edf.eegvlm.json"
        assert store.audit.path == data_dir / key / "night1.edf.eegvlm-audit.jsonl"
        hyp = scored()
        store.save(hyp)
        store.audit.append({"event": "open", "user": "ana"})
        assert store.load() == hyp
        assert sorted(p.name for p in recording.parent.iterdir()) == ["night1.edf"]
    finally:
        os.chmod(recording.parent, 0o755)


def test_default_data_dir_comes_from_platformdirs(recording, tmp_path, monkeypatch):
    calls = []

    def fake_user_data_dir(appname):
        calls.append(appname)
        return str(tmp_path / "appdata")

    monkeypatch.setattr(label_store, "user_data_dir", fake_user_data_dir)
    monkeypatch.setattr(label_store, "folder_is_writable", lambda f: False)
    store = LabelStore.for_recording(recording, fingerprint="fp")
    assert calls == ["eegvlm-desktop"]
    assert store.location.parent.parent == tmp_path / "appdata" / "sidecars"


def test_probe_really_creates_a_file(tmp_path, monkeypatch):
    """os.access can lie (root, read-only mounts, ACLs): the probe file must decide."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    monkeypatch.setattr(label_store.os, "access", lambda *a, **k: True)  # a lying os.access
    assert folder_is_writable(tmp_path)
    assert not folder_is_writable(not_a_dir)
    assert not folder_is_writable(tmp_path / "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # probe cleaned up


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores permission bits")
def test_probe_says_no_for_chmod_read_only_folder(tmp_path):
    os.chmod(tmp_path, 0o555)
    try:
        assert not folder_is_writable(tmp_path)
    finally:
        os.chmod(tmp_path, 0o755)


def test_existing_fallback_sidecar_wins_when_folder_becomes_writable(recording, tmp_path,
                                                                     monkeypatch):
    data_dir = tmp_path / "data"
    with monkeypatch.context() as m:
        m.setattr(label_store, "folder_is_writable", lambda f: False)
        LabelStore.for_recording(recording, fingerprint="fp", data_dir=data_dir).save(scored())
    store = LabelStore.for_recording(recording, fingerprint="fp", data_dir=data_dir)
    assert store.is_fallback and store.load() == scored()


def test_read_only_sidecar_next_to_recording_seeds_the_fallback(recording, tmp_path,
                                                                monkeypatch):
    LabelStore.for_recording(recording, fingerprint="fp").save(scored())
    monkeypatch.setattr(label_store, "folder_is_writable", lambda f: False)
    store = LabelStore.for_recording(recording, fingerprint="fp", data_dir=tmp_path / "data")
    assert store.is_fallback and store.load() == scored()
    hyp = scored()
    hyp.set_stage(11, "W")
    store.save(hyp)
    assert store.load() == hyp
    assert LabelStore.for_recording(recording, fingerprint="fp",
                                    data_dir=tmp_path / "data").load() == hyp


def test_for_recording_removes_old_temps_only(recording):
    old = recording.parent / f".night1.edf.eegvlm.json.0badc0ffee00{TEMP_SUFFIX}"
    new = recording.parent / f".night1.edf.eegvlm.json.00c0ffee0bad{TEMP_SUFFIX}"
    old.write_bytes(b"{half")
    new.write_bytes(b"{half")
    past = time.time() - 3600
    os.utime(old, (past, past))
    LabelStore.for_recording(recording, fingerprint="fp")
    assert not old.exists() and new.exists()


# ---------------------------------------------------------------------- load / save
def test_load_is_none_without_sidecar(recording):
    assert LabelStore.for_recording(recording, fingerprint="fp").load() is None


def test_save_load_round_trip_and_document(recording):
    store = LabelStore.for_recording(recording, fingerprint=recording_fingerprint(recording))
    hyp = scored()
    store.save(hyp)
    again = LabelStore.for_recording(recording, fingerprint=recording_fingerprint(recording))
    loaded = again.load()
    assert loaded == hyp
    assert list(loaded.provenance) == list(hyp.provenance)
    doc = json.loads(store.location.read_text(encoding="utf-8"))
    assert doc["format"] == "eegvlm-labels" and doc["version"] == 1
    assert doc["fingerprint"] == recording_fingerprint(recording)
    assert doc["recording"] == "night1.edf"
    assert doc["saved"].endswith("Z")
    assert doc["hypnogram"] == hyp.to_dict()
    assert [p for p in store.location.parent.iterdir() if p.name.endswith(TEMP_SUFFIX)] == []


def test_corrupt_sidecar_is_a_storage_error_naming_the_file(recording):
    store = LabelStore.for_recording(recording, fingerprint="fp")
    store.location.write_text('{"format": "eegvlm-labels", "version": 1, "hyp', encoding="utf-8")
    with pytest.raises(StorageError, match=r"night1\.edf\.eegvlm\.json.*damaged"):
        store.load()


@pytest.mark.parametrize("doc, match", [
    ({"format": "something-else"}, "not an EEG-VLM labels file"),
    ({"format": "eegvlm-labels", "version": 99, "fingerprint": "fp", "hypnogram": {}},
     "newer version"),
    ({"format": "eegvlm-labels", "version": 1, "fingerprint": "fp",
      "hypnogram": {"stages": ["W", "S4"]}}, "damaged"),
    ({"format": "eegvlm-labels", "version": 1, "fingerprint": "fp"}, "damaged"),
    ([1, 2, 3], "not an EEG-VLM labels file"),
])
def test_malformed_sidecars_are_storage_errors(recording, doc, match):
    store = LabelStore.for_recording(recording, fingerprint="fp")
    store.location.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(StorageError, match=match) as info:
        store.load()
    assert str(store.location) in str(info.value)


def test_fingerprint_mismatch_is_refused_and_old_labels_are_kept_aside(recording):
    old = scored()
    LabelStore.for_recording(recording, fingerprint="version-A").save(old)
    store = LabelStore.for_recording(recording, fingerprint="version-B")
    with pytest.raises(StorageError, match="different version of night1.edf") as info:
        store.load()
    err = info.value
    assert isinstance(err, SidecarMismatchError)
    assert (err.stored, err.expected) == ("version-A", "version-B")
    assert err.hypnogram == old  # so the GUI could offer "use them anyway"

    # the user chose to ignore them and labels afresh: the old file is moved aside, not lost
    new = Hypnogram.unscored(12)
    new.set_stage(0, "W")
    store.save(new)
    assert store.load() == new
    assert store.set_aside_path is not None
    kept = json.loads(store.set_aside_path.read_text(encoding="utf-8"))
    assert kept["fingerprint"] == "version-A"
    assert Hypnogram.from_dict(kept["hypnogram"]) == old
    store.save(new)  # only once
    assert len(list(recording.parent.glob("*.conflict-*"))) == 1


def test_save_without_load_never_overwrites_foreign_sidecar(recording):
    store = LabelStore.for_recording(recording, fingerprint="fp")
    store.location.write_text("not json at all", encoding="utf-8")
    store.save(scored())
    assert store.set_aside_path.read_text(encoding="utf-8") == "not json at all"
    assert store.load() == scored()


def test_failed_save_is_a_storage_error_and_keeps_old_sidecar(recording, monkeypatch):
    store = LabelStore.for_recording(recording, fingerprint="fp")
    store.save(scored())
    good = store.location.read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(label_store, "atomic_write_text", full)
    with pytest.raises(StorageError, match=r"night1\.edf\.eegvlm\.json: No space left"):
        store.save(Hypnogram.unscored(12))
    assert store.location.read_bytes() == good


def test_constructor_validation(tmp_path):
    with pytest.raises(ValueError, match="'fingerprint'"):
        LabelStore(tmp_path / "a.json", tmp_path / "a.jsonl", fingerprint="", recording="a")
    store = LabelStore(tmp_path / "a.json", tmp_path / "a.jsonl", fingerprint="x", recording="a")
    with pytest.raises(TypeError, match="Hypnogram"):
        store.save({"stages": []})  # type: ignore[arg-type]
