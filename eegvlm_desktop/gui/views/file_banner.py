"""A banner above the signal for what is wrong with the open file: it never scrolls away.

The status bar forgets a message after a few seconds, and on a small screen it may not even
be on screen; a flat EEG channel or a night opened read-only must stay in sight until the
scorer has read it. So these notes sit in a band at the top of the window, above the traces,
until dismissed (and come back with the next file that has any).
"""
from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QWidget

#: Background and border per severity: warm yellow for notes, red for unusable signal or a
#: night that cannot be saved here.
_STYLES = {
    "warning": ("#fff4ce", "#e0b400"),
    "error": ("#fde7e9", "#c0392b"),
}
#: Beyond this many lines of text the banner scrolls inside itself rather than pushing the
#: traces off a 768-px screen.
MAX_VISIBLE_LINES = 5


class FileBanner(QFrame):
    """Notes about the open file; hidden while there are none.

    Signals
    -------
    dismissed()
        The scorer closed the banner.
    """

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fileBanner")
        self.label = QLabel()
        self.label.setObjectName("fileBannerText")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        scroll = QScrollArea()
        scroll.setWidget(self.label)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        line = self.label.fontMetrics().lineSpacing()
        scroll.setMaximumHeight(line * MAX_VISIBLE_LINES + 8)
        self._scroll = scroll
        close = QPushButton("Dismiss")
        close.setObjectName("fileBannerDismiss")
        close.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # stage keys must keep going to the window
        close.clicked.connect(self._dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(scroll, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.messages: list[str] = []
        self.severity = "warning"
        self.hide()

    def set_messages(self, messages: list[str], severity: str = "warning",
                     title: str = "") -> None:
        """Show ``messages`` (one bullet each) or hide the banner when there are none.

        Parameters
        ----------
        messages : list of str
            Plain text, one note each.
        severity : {'warning', 'error'}
            Colour of the band.
        title : str
            Bold first line, e.g. ``"Problems with night1.edf"``.
        """
        if severity not in _STYLES:
            raise ValueError(f"Invalid value for the 'severity' parameter. Allowed values are "
                             f"{', '.join(_STYLES)}, but got {severity!r} instead.")
        self.messages = [m for m in messages if m]
        self.severity = severity
        if not self.messages:
            self.label.clear()
            self.hide()
            return
        back, border = _STYLES[severity]
        self.setStyleSheet(f"#fileBanner {{ background: {back}; border: 1px solid {border}; "
                           f"border-radius: 3px; }} #fileBanner QLabel, "
                           f"#fileBanner QScrollArea, #fileBanner QScrollArea > QWidget > "
                           f"QWidget {{ background: {back}; color: #202020; }}")
        head = f"<b>{escape(title)}</b>" if title else ""
        items = "".join(f"<li>{escape(m)}</li>" for m in self.messages)
        self.label.setText(f"{head}<ul style='margin: 0px; margin-left: -24px'>{items}</ul>")
        self.show()

    def _dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()
