"""Exceptions that carry a message meant for the user.

Every error the app can explain (bad file, mismatched hypnogram, bad weights) is an
``EEGVLMError``; the GUI shows ``str(err)`` in a dialog and the CLI prints it, so the
message must say what was wrong, with which file, and what the user can do.
"""
from __future__ import annotations

from collections.abc import Iterable


class EEGVLMError(Exception):
    """Base class for errors whose message is shown to the user verbatim."""


class RecordingError(EEGVLMError):
    """A recording could not be opened or has no usable signal."""


class HypnogramError(EEGVLMError):
    """A hypnogram file could not be read or written."""


class HypnogramMismatchError(HypnogramError):
    """A hypnogram does not fit the recording it is applied to.

    Parameters
    ----------
    message : str
        What does not match, in words the user understands.
    problems : list of str
        One short line per mismatch (length, offset, epoch length).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class HypnogramFitError(HypnogramMismatchError):
    """A mismatch that cropping and/or padding the hypnogram can resolve (the user chooses).

    Other mismatches (a different epoch length, epochs that do not line up with the
    recording's) cannot be fixed that way and are reported as plain errors.
    """


class StorageError(EEGVLMError):
    """Labels could not be saved or restored."""


class ReadOnlyError(StorageError):
    """A change was asked of labels opened read-only; nothing was changed."""


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error of the model (CUDA or CPU allocator).

    torch's ``OutOfMemoryError`` is a ``RuntimeError`` saying "out of memory", so the text
    decides, and code that never loaded torch can ask without importing it.
    """
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def check_option(name: str, value: object, allowed: tuple | list) -> None:
    """Raise ``ValueError`` naming the parameter, the allowed values and the value given."""
    if value not in allowed:
        raise ValueError(
            f"Invalid value for the '{name}' parameter. Allowed values are "
            f"{', '.join(repr(a) for a in allowed)}, but got {value!r} instead."
        )


def as_sentences(parts: Iterable[str]) -> str:
    """Message fragments as sentences, each ending with exactly one full stop.

    Problem lists (e.g. :func:`~eegvlm_desktop.core.hypnogram.fit.check_fit`'s) are whole
    sentences with their own full stops; glued with ``"; "`` or followed by ``". "`` they
    read "short.; It" or "stage.. Use". Each part's trailing full stops, semicolons and
    spaces are dropped and one full stop is put back (a ``?`` or ``!`` is kept as it is);
    empty parts are skipped.

    Examples
    --------
    >>> as_sentences(["The hypnogram is 2 epochs short.", "it starts late;", ""])
    'The hypnogram is 2 epochs short. it starts late.'
    """
    out = []
    for part in parts:
        text = str(part).strip().rstrip(" ;.")
        if text:
            out.append(text if text.endswith(("?", "!")) else text + ".")
    return " ".join(out)
