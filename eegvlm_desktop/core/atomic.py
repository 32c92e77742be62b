"""Crash-safe file replacement: write a temp file, fsync it, rename it over the target.

A reader of ``path`` sees either the complete old content or the complete new content,
never a mixture, whatever moment the writing process is killed at (SIGKILL, power loss):

1. the new bytes go to a temp file *in the same directory* (``os.replace`` is only atomic
   within one file system, and a temp in ``/tmp`` may live on another one);
2. the temp is flushed and ``os.fsync``-ed, so its data is on disk *before* the rename makes
   it visible (otherwise a power loss can leave the new name pointing at an empty file);
3. ``os.replace`` swaps it in atomically;
4. the directory is fsync-ed so the rename itself survives a power loss (POSIX only;
   Windows has no directory handles to sync and NTFS journals the rename).

A killed writer leaves a ``*.eegvlm-tmp`` file behind; :func:`cleanup_stale_temps` removes
those. They are never read, so a half-written temp cannot replace a good file.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from pathlib import Path

#: Suffix of every temp file this module creates (and the only ones cleanup removes).
TEMP_SUFFIX = ".eegvlm-tmp"

# Directory fsync is not supported everywhere (some network and FUSE file systems answer
# EINVAL). By then the rename has happened, so failing the save would report an error for
# data that *was* written; these errnos are ignored instead.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF,
                          errno.EACCES, errno.EPERM}


def temp_name(target_name: str) -> str:
    """A fresh, hidden temp file name for ``target_name`` (same folder, random token).

    The name starts with ``.<target_name>.`` and ends with :data:`TEMP_SUFFIX`, which is
    what :func:`cleanup_stale_temps` matches on.
    """
    return f".{target_name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def fsync_directory(folder: str | os.PathLike[str]) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk; no-op on Windows.

    Parameters
    ----------
    folder : path-like
        The directory whose entries changed.
    """
    if os.name != "posix":
        return
    fd = os.open(os.fspath(folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _create_temp(folder: Path, target_name: str) -> tuple[int, Path]:
    """Create and open a new temp file exclusively; retry on the (unlikely) name clash."""
    for _ in range(100):
        tmp = folder / temp_name(target_name)
        try:
            # O_EXCL: never reuse (and truncate) a file another writer is filling.
            # Mode 0o666 is filtered by the umask, like any file the user creates; mkstemp
            # would force 0o600 and silently make shared sidecars private.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"Could not create a unique temp file in {folder}.")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file at ``path`` with ``data`` atomically and durably.

    After a normal return the new content is on disk. If the call fails or the process
    dies half-way, ``path`` still holds its previous content (or still does not exist).

    Parameters
    ----------
    path : path-like
        The file to create or replace. Its folder must exist.
    data : bytes
        The complete new content.

    Raises
    ------
    TypeError
        If ``data`` is not bytes-like.
    OSError
        If the folder is not writable, the disk is full, etc. The temp file is removed
        before the error propagates.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"'data' must be bytes, got {type(data).__name__}.")
    target = Path(path)
    folder = target.parent
    fd, tmp = _create_temp(folder, target.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()  # Python's buffer -> kernel
            os.fsync(f.fileno())  # kernel -> disk, before the rename can expose it
        try:
            # Keep the permissions of the file being replaced (e.g. group-readable labels).
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException:
        # BaseException: a KeyboardInterrupt mid-write must not leave the temp behind either.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(folder)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace the file at ``path`` with ``text`` atomically; see :func:`atomic_write_bytes`.

    Parameters
    ----------
    path : path-like
        The file to create or replace.
    text : str
        The complete new content, written without newline translation.
    encoding : str
        Text encoding (UTF-8 by default, whatever the platform's locale).
    """
    if not isinstance(text, str):
        raise TypeError(f"'text' must be str, got {type(text).__name__}.")
    atomic_write_bytes(path, text.encode(encoding))


def cleanup_stale_temps(folder: str | os.PathLike[str], stem: str,
                        min_age_s: float = 60.0) -> list[Path]:
    """Delete temp files left by killed writers of ``folder/stem``.

    Parameters
    ----------
    folder : path-like
        The folder of the target file.
    stem : str
        The target's file name (e.g. ``"night1.edf.eegvlm.json"``); only temps named
        ``.<stem>.<token>.eegvlm-tmp`` are touched, never other files.
    min_age_s : float
        Only temps not modified for this many seconds are removed, so a save that another
        app instance is doing right now is not sabotaged. Use 0 to remove all.

    Returns
    -------
    list of Path
        The files removed. Files that vanish or cannot be removed are skipped silently:
        a leftover temp is harmless, it is never read.
    """
    removed: list[Path] = []
    base = Path(folder)
    prefix = f".{stem}."
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(base / name)
    return removed
