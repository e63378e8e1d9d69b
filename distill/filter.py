"""`distill filter` (not implemented yet)."""

from __future__ import annotations

from distill.errors import UserError


def command() -> None:
    """Not implemented yet."""
    raise UserError("distill filter is not implemented yet")
