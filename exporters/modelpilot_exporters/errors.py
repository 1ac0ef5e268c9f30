"""Error types of the exporter and the exit codes they map to.

* :class:`InputError` (exit code 2): the input is wrong. A bad spec field, a missing source, bad
  credentials, an unreadable calibration file. The message names the field or the URI.
* :class:`ExportError` (exit code 1): the input looked fine but the export failed: a converter
  error, or validation outside tolerance.

Every message is ONE line: it ends up in the Job's termination message and the ModelExport status.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_EXPORT_FAILED = 1
EXIT_BAD_INPUT = 2


def one_line(text: str, limit: int = 600) -> str:
    """Collapse whitespace to one line and cap the length."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class ExporterError(Exception):
    """Base class: carries a one-line message and an exit code."""

    exit_code = EXIT_EXPORT_FAILED

    def __init__(self, message: str):
        super().__init__(one_line(message))

    @property
    def message(self) -> str:
        return str(self)


class InputError(ExporterError):
    """Bad input (spec, source, credentials, calibration data): exit code 2."""

    exit_code = EXIT_BAD_INPUT


class SpecError(InputError):
    """A spec field is invalid; the message starts with the field path."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class ExportError(ExporterError):
    """The conversion or the validation failed: exit code 1."""

    exit_code = EXIT_EXPORT_FAILED
