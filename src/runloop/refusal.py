"""The one kind of error a user meets: what is wrong and what to do, in a line or two, never a traceback.

The package raises `Refused` (or a kind of it); tasks.py's tasks turn it into invoke's Exit, so the package itself
imports no invoke and the failure record (failure.py) runs with the standard library alone.
"""

from __future__ import annotations


class Refused(Exception):
    """Something a command will not do; `str()` is the line to print, `code` the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        return str(self)
