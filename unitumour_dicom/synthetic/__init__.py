"""Phantom H&E-like whole-slide images with a known tumour mask, written as real DICOM WSI.

Every other part of the project tests against these: the listener receives them, the model
trains and is scored on them, the SEG writer lays masks over them and the web app shows them.
The content is analytic (see :mod:`.scene`), so the ground truth exists at any resolution and
a 40,000 x 40,000 pixel base level is written tile by tile in flat memory.

Modules: ``spec`` (what to make), ``scene`` (shapes), ``noise`` and ``render`` (pixels),
``pyramid`` (levels), ``codecs`` (transfer syntaxes), ``dicom_header`` (the IOD's
attributes), ``instance_writer`` (streaming files), ``slide_label`` (label and overview),
``phantom`` (the API below).

The names below are imported on first use (``phantom`` imports wsidicom), so that
``unitumour --help`` can read ``spec`` (the command's choices) without them.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .phantom import PhantomSlide, load_phantom, rasterise, write_phantom_slide
    from .scene import Scene
    from .spec import TRANSFER_SYNTAX_NAMES, PhantomSpec

__all__ = [
    "TRANSFER_SYNTAX_NAMES",
    "PhantomSlide",
    "PhantomSpec",
    "Scene",
    "load_phantom",
    "rasterise",
    "write_phantom_slide",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "PhantomSlide": ".phantom",
        "load_phantom": ".phantom",
        "rasterise": ".phantom",
        "write_phantom_slide": ".phantom",
        "Scene": ".scene",
        "TRANSFER_SYNTAX_NAMES": ".spec",
        "PhantomSpec": ".spec",
    },
)
