"""One error type for every mistake a user can fix, so the CLI can map it to exit code 2."""

from __future__ import annotations


class EdgembError(Exception):
    """A bad input or environment problem, with a message that says what to do about it."""


class ParityError(Exception):
    """A stage ran but its measured numbers broke the agreed budget (CLI exit code 1)."""
