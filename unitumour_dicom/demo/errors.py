"""The demo's own error."""

from __future__ import annotations

from ..errors import UniTumourError


class DemoError(UniTumourError):
    """The demo cannot go on: a missing tool, a busy folder, a SEG that does not fit its slide."""
