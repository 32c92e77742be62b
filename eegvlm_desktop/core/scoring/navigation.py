"""Where the scorer is in the night: current epoch, page, auto-advance (Qt-free, evented).

Taken out of the main window so that every controller reads and moves the same state, and so
that the rules (clamping, page arithmetic, wrap-around searches) are tested without Qt. The
window subscribes to ``moved`` and shows the page; controllers call :meth:`go_to`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from eegvlm_desktop.core.events import Event


class Navigation:
    """The current epoch and page of one open night.

    Parameters
    ----------
    epoch_length : float
        Seconds per scoring epoch (30 for AASM).

    Events
    ------
    moved(epoch)
        After every :meth:`go_to` (also when the epoch stays, e.g. after the page length
        changed), so listeners redraw the page.
    """

    def __init__(self, epoch_length: float = 30.0) -> None:
        if not (isinstance(epoch_length, (int, float)) and math.isfinite(epoch_length)
                and epoch_length > 0):
            raise ValueError(f"Invalid value for the 'epoch_length' parameter: it must be a "
                             f"finite number of seconds > 0, but got {epoch_length!r}.")
        self.epoch_length = float(epoch_length)
        self.moved = Event("moved")
        self.n_epochs = 0
        self.epoch = 0
        self.window_s = self.epoch_length
        #: After a label, move to the next epoch (the scorer's usual rhythm).
        self.auto_advance = True

    # ------------------------------------------------------------------ state
    def reset(self, n_epochs: int) -> None:
        """A night of ``n_epochs`` was opened: back to epoch 0 (no event; call go_to)."""
        if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 0:
            raise ValueError(f"Invalid value for the 'n_epochs' parameter: it must be a whole "
                             f"number >= 0, but got {n_epochs!r}.")
        self.n_epochs = n_epochs
        self.epoch = 0

    @property
    def epochs_per_page(self) -> int:
        return max(1, int(round(self.window_s / self.epoch_length)))

    @property
    def page_start(self) -> int:
        """The first epoch of the page that holds the current epoch."""
        return (self.epoch // self.epochs_per_page) * self.epochs_per_page

    def page_epochs(self) -> list[int]:
        """The epochs of the current page (the last page may be short)."""
        first = self.page_start
        return list(range(first, min(first + self.epochs_per_page, self.n_epochs)))

    # ------------------------------------------------------------------ moves
    def go_to(self, epoch: int) -> None:
        """Make ``epoch`` current, clamped to the night; nothing happens without a night."""
        if self.n_epochs == 0:
            return
        self.epoch = min(max(int(epoch), 0), self.n_epochs - 1)
        self.moved.emit(self.epoch)

    def step(self, epochs: int) -> None:
        """Move by ``epochs`` (negative: back)."""
        self.go_to(self.epoch + epochs)

    def step_page(self, pages: int) -> None:
        """Move by ``pages`` pages (negative: back)."""
        self.go_to(self.epoch + pages * self.epochs_per_page)

    def advance(self) -> None:
        """After a label: the next epoch when auto-advance is on and there is one."""
        if self.auto_advance and self.epoch < self.n_epochs - 1:
            self.go_to(self.epoch + 1)

    def set_window(self, seconds: float) -> None:
        """Show ``seconds`` per page (at least one epoch) and redraw the current page."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"Invalid value for the 'seconds' parameter: it must be a finite "
                             f"number > 0, but got {seconds!r}.")
        self.window_s = float(seconds)
        self.go_to(self.epoch)

    def next_where(self, mask: Sequence[bool]) -> int | None:
        """The first epoch after the current one where ``mask`` is true, wrapping round the
        night (the current epoch last); None when there is none."""
        n = len(mask)
        for k in range(1, n + 1):
            i = (self.epoch + k) % n
            if mask[i]:
                return i
        return None
