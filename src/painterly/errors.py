"""The one family of exceptions a user can cause.

Front-ends turn a `PainterlyError` into a one-line message and `exit_code`;
anything else is a bug and keeps its traceback.
"""


class PainterlyError(Exception):
    """A problem the user can fix: bad input, missing weights, impossible settings."""

    exit_code = 1


class UsageError(PainterlyError):
    """Settings that contradict each other or are out of range."""

    exit_code = 2


class ImageError(PainterlyError):
    """An image file that cannot be read or written; the message names the file."""


class OutputError(PainterlyError):
    """An output that cannot be written (full disk, read-only folder, a folder in the way); names the path."""


class WeightsError(PainterlyError):
    """VGG weights that cannot be found, downloaded, verified or loaded."""


class ModelFileError(PainterlyError):
    """A fast-style model file that is missing, corrupt or of an unknown layout."""


class NumericalError(PainterlyError):
    """The loss became NaN or infinite; `image` holds the last good result, if any."""

    def __init__(self, message: str, image=None, step: int | None = None):
        super().__init__(message)
        self.image = image
        self.step = step


def quote_short(value: object, limit: int = 60) -> str:
    """A value from a file or a stranger, for a message: its repr, cut short (a hostile file may hold
    megabytes where a name belongs)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def one_line(error: BaseException) -> str:
    """Another library's exception message on one line, at most 200 characters: error messages here are
    one line, and theirs may span many."""
    text = " ".join(str(error).split())
    return text[:200] or type(error).__name__
