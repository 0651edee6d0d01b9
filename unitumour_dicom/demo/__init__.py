"""The one-command demo's library side: sample slides with a known mask, the demo's settings,
what the database says about each slide while it runs, and the Dice of the SEG that came back.

``unitumour demo`` (services/demo.py) only starts processes and prints; everything it decides
or measures is here, so the end-to-end tests call the same functions.

Modules: ``samples`` (the phantom and the EBHI-Seg mosaic), ``config`` (the settings TOML),
``progress`` (per-slide state from the database), ``score`` (Dice of a received SEG against
the known mask), ``summary`` (the report printed at the end).

The names below are imported on first use (``samples`` and ``score`` import wsidicom and
torch's neighbours): ``unitumour --help`` imports the demo command, not the demo.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .config import DemoPorts, demo_settings, settings_toml
    from .progress import SlideProgress, slide_progress
    from .samples import SampleSlide, build_samples, locate_ebhi_data, storescu_transfer_option
    from .score import SegScore, received_seg_files, score_seg
    from .summary import SlideReport, format_report

__all__ = [
    "DemoPorts",
    "SampleSlide",
    "SegScore",
    "SlideProgress",
    "SlideReport",
    "build_samples",
    "demo_settings",
    "format_report",
    "locate_ebhi_data",
    "received_seg_files",
    "score_seg",
    "settings_toml",
    "slide_progress",
    "storescu_transfer_option",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DemoPorts": ".config",
        "demo_settings": ".config",
        "settings_toml": ".config",
        "SlideProgress": ".progress",
        "slide_progress": ".progress",
        "SampleSlide": ".samples",
        "build_samples": ".samples",
        "locate_ebhi_data": ".samples",
        "storescu_transfer_option": ".samples",
        "SegScore": ".score",
        "received_seg_files": ".score",
        "score_seg": ".score",
        "SlideReport": ".summary",
        "format_report": ".summary",
    },
)
