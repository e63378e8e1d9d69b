"""`distill generate` (not implemented yet)."""

from __future__ import annotations

from distill.errors import UserError


def command() -> None:
    """Not implemented yet."""
    raise UserError("distill generate is not implemented yet")
