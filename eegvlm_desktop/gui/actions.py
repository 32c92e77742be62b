"""QActions and menus built from the one shortcut table (``shortcuts.SHORTCUTS``)."""
from __future__ import annotations

from typing import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from eegvlm_desktop.gui.shortcuts import SHORTCUTS


def build_actions(window: QMainWindow, handlers: dict[str, Callable[[], object]]
                  ) -> tuple[dict[str, QAction], dict[str, QMenu]]:
    """One QAction per table entry, in menus named by the table, bound to ``handlers``.

    Every action is also added to the window itself so its shortcut works with the menu
    bar hidden. A missing handler is a programming error and raises ``KeyError``.
    """
    actions: dict[str, QAction] = {}
    menus: dict[str, QMenu] = {}
    for sc in SHORTCUTS:
        if sc.menu not in menus:
            menus[sc.menu] = window.menuBar().addMenu(f"&{sc.menu}")
        act = QAction(sc.text, window)
        act.setObjectName(sc.action_id)
        act.setShortcuts([QKeySequence(k) for k in sc.keys])
        act.setToolTip(f"{sc.description} ({', '.join(sc.keys)})")
        act.setStatusTip(sc.description)
        # triggered(bool) would land in a handler's first argument: drop it.
        act.triggered.connect(lambda _checked=False, h=handlers[sc.action_id]: h())
        menus[sc.menu].addAction(act)
        window.addAction(act)
        actions[sc.action_id] = act
    return actions, menus
