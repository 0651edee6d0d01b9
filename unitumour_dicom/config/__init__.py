"""Settings: one typed, immutable object built by :func:`load_settings`, never at import time."""

from .settings import Settings, load_settings, masked_settings

__all__ = ["Settings", "load_settings", "masked_settings"]
