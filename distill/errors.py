"""User-facing errors: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (unknown reference, missing column, bad flag...).

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    The message should name the problem and say what to do about it.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
