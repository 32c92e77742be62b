"""Atomic replacement: content, permissions, clean failure, and survival of a killed writer."""
from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from eegvlm_desktop.core import atomic
from eegvlm_desktop.core.atomic import (TEMP_SUFFIX, atomic_write_bytes, atomic_write_text,
                                        cleanup_stale_temps)
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.scoring.label_store import LabelStore

REPO = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL and fork semantics")


def temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def test_write_creates_and_replaces_without_leftovers(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write_text(target, "second \u00e9\u03b1\n")
    assert target.read_bytes() == "second \u00e9\u03b1\n".encode("utf-8")
    assert temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_rejects_wrong_types(tmp_path):
    with pytest.raises(TypeError, match="'data' must be bytes"):
        atomic_write_bytes(tmp_path / "x", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'text' must be str"):
        atomic_write_text(tmp_path / "x", b"bytes")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_keeps_permissions_of_replaced_file(tmp_path):
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_removes_temp_and_keeps_old_content(tmp_path, monkeypatch, failing):
    target = tmp_path / "a.json"
    target.write_bytes(b"good old content")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == b"good old content"
    assert temps(tmp_path) == []


def test_data_and_directory_are_fsynced_before_and_after_rename(tmp_path, monkeypatch):
    """The order matters: file fsync before the rename exposes it, dir fsync after."""
    log: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        log.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src, dst):
        log.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic_write_bytes(tmp_path / "a.json", b"x")
    expected = ["fsync-file", "replace"] + (["fsync-dir"] if os.name == "posix" else [])
    assert log == expected


def test_cleanup_removes_only_stale_temps_of_that_file(tmp_path):
    mine = tmp_path / f".rec.edf.eegvlm.json.abc123{TEMP_SUFFIX}"
    fresh = tmp_path / f".rec.edf.eegvlm.json.def456{TEMP_SUFFIX}"
    other = tmp_path / f".other.edf.eegvlm.json.abc123{TEMP_SUFFIX}"
    keep = tmp_path / "rec.edf.eegvlm.json"
    for p in (mine, fresh, other, keep):
        p.write_bytes(b"x")
    old = time.time() - 3600
    for p in (mine, other, keep):
        os.utime(p, (old, old))
    removed = cleanup_stale_temps(tmp_path, "rec.edf.eegvlm.json")
    assert removed == [mine]
    # a fresh temp may belong to a save in progress in another app instance: kept
    assert fresh.exists() and other.exists() and keep.exists()
    assert cleanup_stale_temps(tmp_path, "rec.edf.eegvlm.json", min_age_s=0) == [fresh]
    assert cleanup_stale_temps(tmp_path / "missing", "rec.edf.eegvlm.json") == []


# ---------------------------------------------------------------------- killed writer
CHILD = textwrap.dedent("""
    import os, sys, time
    from eegvlm_desktop.core import atomic
    target, where = sys.argv[1], sys.argv[2]
    real = getattr(os, where)

    def hang(*args, **kwargs):
        # The new data is (partly) in the temp file; tell the parent, then wait to be killed.
        print("WRITING", flush=True)
        time.sleep(3600)

    setattr(atomic.os, where, hang)
    payload = b'{"format": "eegvlm-labels", "garbage": "' + b"x" * 4_000_000
    atomic.atomic_write_bytes(target, payload)
    print("RETURNED", flush=True)
""")


def wait_for_line(proc: subprocess.Popen, timeout: float = 20.0) -> str:
    """Read one stdout line from ``proc``, failing (not hanging) if it never comes."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"child printed nothing in {timeout} s; stderr: {proc.stderr.read()!r}")
    return proc.stdout.readline().strip()


@posix_only
@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_sigkill_mid_write_leaves_old_sidecar_intact(tmp_path, where):
    hyp = Hypnogram.unscored(20)
    hyp.set_stages(range(10), "N2")
    store = LabelStore(tmp_path / "rec.edf.eegvlm.json", tmp_path / "rec.edf.eegvlm-audit.jsonl",
                       fingerprint="fp", recording="rec.edf")
    store.save(hyp)
    good = store.location.read_bytes()

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store.location), where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    try:
        assert wait_for_line(proc) == "WRITING"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()

    # the half-done write left a temp behind, but the sidecar is byte-identical and loads
    leftovers = temps(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 1_000_000
    assert store.location.read_bytes() == good
    assert LabelStore(store.location, store.audit.path, fingerprint="fp",
                      recording="rec.edf").load() == hyp
    # the stale temp is removed by cleanup (and by LabelStore.for_recording once old)
    assert cleanup_stale_temps(tmp_path, store.location.name, min_age_s=0) == leftovers
    assert temps(tmp_path) == []
