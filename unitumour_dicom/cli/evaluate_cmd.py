"""``unitumour evaluate``: see unitumour_dicom.evaluate.command."""

from ..evaluate.command import evaluate_command

__all__ = ["evaluate_command"]
