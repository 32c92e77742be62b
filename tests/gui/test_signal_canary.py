"""PySide6 6.12.0 drops a reference to True on every emit and aborts after ~1000 emits
(shared/design/environment.md). This canary fails loudly if such a build sneaks in."""
from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(bool)


def test_ten_thousand_emits(qapp):
    e = _Emitter()
    count = []
    e.fired.connect(lambda v: count.append(v))
    for _ in range(10_000):
        e.fired.emit(True)
    assert len(count) == 10_000
