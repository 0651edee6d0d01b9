"""UniTumour DICOM: one universal tumour segmentation model for H&E whole-slide images.

The library holds every piece of logic; the processes in ``unitumour_services`` only wire it
together. Library code logs through module loggers and never configures handlers itself.
"""

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unitumour-dicom")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
