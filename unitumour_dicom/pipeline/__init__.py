"""The pipeline: process one slide's job, the single path of the worker, the CLI and the tests."""

from .models import ModelProvider
from .process import JobOutcome, process_slide
from .provenance import code_version, settings_used

__all__ = ["JobOutcome", "ModelProvider", "code_version", "process_slide", "settings_used"]
