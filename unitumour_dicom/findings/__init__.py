"""What every result object besides the SEG (SR, bulk annotations, key image) shares: the
model's identity (``identity``), the per-slide figures (``figures``) and the exact, strip-wise
count of tumour regions (``regions``)."""

from .figures import MaskResult, SlideFigures, slide_figures
from .identity import RESEARCH_USE_ONLY, ModelIdentity, content_label, labelled
from .regions import RegionStats, tumour_regions

__all__ = [
    "RESEARCH_USE_ONLY",
    "MaskResult",
    "ModelIdentity",
    "RegionStats",
    "SlideFigures",
    "content_label",
    "labelled",
    "slide_figures",
    "tumour_regions",
]
