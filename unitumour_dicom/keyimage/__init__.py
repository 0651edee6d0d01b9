"""The key image: the slide thumbnail with the tumour outline and the figures burned in, as a
DICOM Secondary Capture Image.

Modules: ``sc`` (write_key_image, the entry point), ``picture`` (reading the thumbnail and
drawing on it).
"""

from .picture import compose, read_thumbnail, tumour_on_thumbnail
from .sc import SECONDARY_CAPTURE_IMAGE_STORAGE, write_key_image

__all__ = [
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "compose",
    "read_thumbnail",
    "tumour_on_thumbnail",
    "write_key_image",
]
