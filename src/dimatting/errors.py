"""Errors meant for people.

Every failure a user can cause (a missing file, a bad trimap, a corrupt checkpoint, a config typo) is raised
as a `DimattingError` whose message is one line that names the file and says what to do. The CLI prints
that line and exits non-zero; a traceback is shown only with `--debug`. Anything else is a bug.
"""


class DimattingError(Exception):
    """Base class: the message is one line that names the file and the fix.

    The command line prints `<label>: <message>` and exits with `exit_code`."""

    label = "error"
    exit_code = 2


class InputError(DimattingError):
    """An image, trimap, alpha or mask given by the user cannot be used."""


class CheckpointError(DimattingError):
    """A checkpoint is missing, corrupt, unsafe or of another model."""


class ConfigError(DimattingError):
    """A config file or a `--cfg-options` override is wrong."""


class DataError(DimattingError):
    """A dataset folder or annotation file is missing or inconsistent."""
