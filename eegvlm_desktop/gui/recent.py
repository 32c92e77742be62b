"""File > Open recent: the last recordings opened, kept in QSettings."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

MAX_RECENT = 8


class RecentFiles:
    """Keeps the ``MAX_RECENT`` most recent paths and mirrors them in ``menu``."""

    def __init__(self, settings: QSettings, menu: QMenu, open_file: Callable[[str], object]):
        self.settings, self.menu, self._open = settings, menu, open_file
        self._rebuild()

    def paths(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def add(self, path: Path) -> None:
        p = str(Path(path).resolve())
        self.settings.setValue("recent", ([p] + [q for q in self.paths() if q != p])[:MAX_RECENT])
        self._rebuild()

    def _rebuild(self) -> None:
        self.menu.clear()
        for p in self.paths():
            act = self.menu.addAction(p)
            act.triggered.connect(lambda _checked=False, p=p: self._open(p))
        self.menu.setEnabled(bool(self.paths()))
