"""The ``unitumour`` command: library commands here, process commands in unitumour_services."""

from .app import app

__all__ = ["app"]
