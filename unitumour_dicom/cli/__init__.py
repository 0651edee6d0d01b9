"""The ``unitumour`` command: library commands here, process commands in unitumour_services.

``app`` is imported on first use, so that a command module living elsewhere (``train.command``
on a training host) can import :mod:`.bars` without the whole command tree.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import app

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from .app import app

        globals()["app"] = app  # the Typer, not the submodule the import bound to the name
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
