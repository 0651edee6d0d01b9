"""The audit web app (FastAPI): ``create_app(settings)``; served by ``unitumour web``."""

from .app import create_app

__all__ = ["create_app"]
