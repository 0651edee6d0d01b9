"""The audit web app (FastAPI): ``create_app(settings)``; served by ``unitumour web``.

``create_app`` is imported on first use: ``unitumour --help`` imports ``web.command`` (this
package) and must not import FastAPI with it.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
