"""Errors of the stream layer that more than one of its modules raises."""
from __future__ import annotations

__all__ = ["SourceError"]


class SourceError(RuntimeError):
    """A source failed to open or read. The message names the (redacted) URI and the cause."""
