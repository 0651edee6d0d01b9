"""Vendor whole-slide files (Aperio SVS, Hamamatsu NDPI, Philips TIFF, OME-TIFF...) to DICOM.

The conversion itself is wsidicomizer's (opentile passes JPEG tiles through without
re-encoding; OpenSlide reads the rest), run in its own virtual environment as a subprocess:
``worker`` is that subprocess's script, ``runner`` starts it within limits, ``identity``
decides the patient, study and container attributes (sidecar, file-name pattern or a
generated, clearly marked identity). The core never imports wsidicomizer.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .identity import IdentityError, SlideIdentity, resolve_identity
    from .runner import Conversion, ConversionError, convert_file, converter_python

__all__ = [
    "Conversion",
    "ConversionError",
    "IdentityError",
    "SlideIdentity",
    "convert_file",
    "converter_python",
    "resolve_identity",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Conversion": ".runner",
        "ConversionError": ".runner",
        "convert_file": ".runner",
        "converter_python": ".runner",
        "IdentityError": ".identity",
        "SlideIdentity": ".identity",
        "resolve_identity": ".identity",
    },
)
