"""``unitumour train``: the command lives in unitumour_dicom.train.command so that training
hosts can run it (``python -m unitumour_dicom.train``) without the settings layer."""

from ..train.command import train_command

__all__ = ["train_command"]
