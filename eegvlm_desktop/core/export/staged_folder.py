"""Write a whole folder so that it appears complete or not at all.

Files go to a hidden sibling ``.<name>.<token>.partial`` (same parent, hence same file
system, so the final ``os.rename`` is atomic), each fsync-ed; the folder is renamed into
place only when everything is written. On any error, or a cancel, the partial folder is
removed, so nothing at ``<name>`` ever looks like a finished export that is not one.

Replacing an existing folder is rename-old-aside, rename-new-in, delete-old: POSIX has no
portable atomic swap of two directories, so for an instant ``<name>`` is absent, but it never
holds a mixture of old and new files, and if the second rename fails the old one is put back.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType

from eegvlm_desktop.core.atomic import fsync_directory

PARTIAL_SUFFIX = ".partial"


class StagedFolder:
    """A folder being written: ``write`` files into it, then ``commit`` it to ``target``.

    Use as a context manager: leaving the block without :meth:`commit` (an exception, a
    cancel) deletes the partial folder.

    Parameters
    ----------
    target : Path
        Where the folder will appear. Its parent must exist.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        self.path = self.target.parent / (f".{self.target.name}.{secrets.token_hex(6)}"
                                          f"{PARTIAL_SUFFIX}")
        self.path.mkdir()
        self._dirs: set[Path] = {self.path}
        self._done = False

    def write(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` (a '/'-separated path inside the folder), fsync-ed."""
        path = self.path / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename can make the folder visible

    def commit(self, replace: bool = False) -> None:
        """Move the written folder to ``target``; ``replace`` an existing one if asked."""
        for d in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_directory(d)  # the entries of every folder, deepest first
        old = None
        if replace and (self.target.exists() or self.target.is_symlink()):
            old = self.target.parent / f".{self.target.name}.{secrets.token_hex(6)}.old"
            os.rename(self.target, old)
        try:
            os.rename(self.path, self.target)
        except BaseException:
            if old is not None:
                os.rename(old, self.target)
            raise
        self._done = True
        fsync_directory(self.target.parent)
        if old is not None:
            # A leftover '.old' is hidden and harmless; the new export is already in place.
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Delete the partial folder (nothing to do after a commit)."""
        if not self._done:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "StagedFolder":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()
