"""The lock beside a night's labels: one window scores, a second is refused, stale locks go."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from eegvlm_desktop.core.errors import StorageError
from eegvlm_desktop.core.scoring.label_lock import (LabelLock, LabelsLockedError, read_owner,
                                            stale_reason)


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(path, **fields):
    doc = {"format": "eegvlm-lock", "version": 1, "host": socket.gethostname(),
           "pid": os.getpid(), "user": "ana", "since": "2024-05-01T22:13:04.123Z",
           "heartbeat": "2024-05-01T22:13:04.123Z", "token": "feedc0de", **fields}
    path.write_text(json.dumps(doc))


def test_acquire_writes_owner_and_release_removes_it(tmp_path):
    path = tmp_path / "n.edf.eegvlm.lock"
    lock = LabelLock.acquire(path, user="ana")
    owner = read_owner(path)
    assert (owner.host, owner.pid, owner.user) == (socket.gethostname(), os.getpid(), "ana")
    assert owner.since and owner.heartbeat and lock.took_over is None
    lock.verify()
    lock.release()
    assert not path.exists() and not lock.held
    lock.release()  # twice is harmless


def test_second_acquire_is_refused_naming_the_owner(tmp_path):
    path = tmp_path / "n.edf.eegvlm.lock"
    first = LabelLock.acquire(path, user="ana")
    with pytest.raises(LabelsLockedError) as info:
        LabelLock.acquire(path, user="ben")
    message = str(info.value)
    assert "ana" in message and socket.gethostname() in message and str(os.getpid()) in message
    assert "read-only" in message
    assert info.value.owner.token == first.owner.token
    first.verify()  # the refused attempt left the owner's lock alone


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    path = tmp_path / "n.edf.eegvlm.lock"
    pid = _dead_pid()
    _write_lock(path, pid=pid)
    lock = LabelLock.acquire(path, user="ben")
    assert f"process {pid}" in lock.took_over and "no longer running" in lock.took_over
    assert read_owner(path).user == "ben"


def test_other_host_lock_is_stale_only_when_old(tmp_path):
    path = tmp_path / "n.edf.eegvlm.lock"
    _write_lock(path, host="ward-pc", pid=1, heartbeat="2999-01-01T00:00:00.000Z")
    with pytest.raises(LabelsLockedError, match="ward-pc"):
        LabelLock.acquire(path, user="ben")
    _write_lock(path, host="ward-pc", pid=1, heartbeat="2000-01-01T00:00:00.000Z")
    old = time.time() - 3600
    os.utime(path, (old, old))
    lock = LabelLock.acquire(path, user="ben")
    assert "not been refreshed" in lock.took_over


def test_unreadable_lock_is_stale_only_after_a_grace_period(tmp_path):
    path = tmp_path / "n.edf.eegvlm.lock"
    path.write_text("")  # its writer died between creating and filling it
    assert stale_reason(path, None) is None  # ...or is filling it right now
    old = time.time() - 60
    os.utime(path, (old, old))
    assert "unreadable" in stale_reason(path, None)
    assert LabelLock.acquire(path, user="ben").took_over


def test_owner_that_lost_its_lock_is_refused_and_leaves_the_new_lock(tmp_path):
    path = tmp_path / "n.edf.eegvlm.lock"
    lock = LabelLock.acquire(path, user="ana")
    _write_lock(path, user="ben", token="0ther")  # taken over (e.g. after a long sleep)
    with pytest.raises(StorageError, match="no longer this window's"):
        lock.verify()
    with pytest.raises(StorageError, match="ben"):
        lock.refresh(force=True)
    lock.release()
    assert read_owner(path).user == "ben"


def test_refresh_renews_the_heartbeat(tmp_path):
    path = tmp_path / "n.edf.eegvlm.lock"
    lock = LabelLock.acquire(path, user="ana")
    before = read_owner(path).heartbeat
    lock.refresh()  # not due yet: nothing written
    assert read_owner(path).heartbeat == before
    time.sleep(0.002)
    lock.refresh(force=True)
    after = read_owner(path)
    assert after.heartbeat > before and after.since == lock.owner.since


def test_path_for_sidecar():
    from pathlib import Path

    assert LabelLock.path_for(Path("/x/n1.edf.eegvlm.json")) == Path("/x/n1.edf.eegvlm.lock")
