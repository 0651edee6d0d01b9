"""The case picture: the slide's thumbnail with the tumour drawn over it (the drawing is the
library's, :mod:`unitumour_dicom.seg.overlay`, which reads the SEG band by band and never
holds a whole level), cached by the digests of its inputs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Any

from unitumour_dicom.seg.overlay import (
    FILL_ALPHA,
    FILL_RGB,
    OUTLINE_PIXELS,
    OUTLINE_RGB,
    PictureError,
    SegLevel,
    choose_seg_level,
    draw_overlay,
    read_seg_mask,
    read_seg_picture,
    render_overlay_png,
    resample_nearest,
    seg_levels,
)

__all__ = [
    "FILL_ALPHA",
    "FILL_RGB",
    "OUTLINE_PIXELS",
    "OUTLINE_RGB",
    "PictureCache",
    "PictureError",
    "SegLevel",
    "case_overlay_png",
    "choose_seg_level",
    "draw_overlay",
    "read_seg_mask",
    "read_seg_picture",
    "render_overlay_png",
    "resample_nearest",
    "seg_levels",
]

log = logging.getLogger(__name__)


class PictureCache:
    """Rendered pictures by the digests of their inputs: stored objects never change, so a
    key of digests is exact and a picture is drawn once per process."""

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def case_overlay_png(
    *, session: Any, store: Any, slide_id: int, cache: PictureCache, max_pixels: int
) -> tuple[bytes, str]:
    """The picture of a case and its ETag: the slide's stored instances and the SEG of its
    latest result. Raises cases.NotFoundError for an unknown case."""
    from unitumour_dicom.db import InstanceState

    from .cases import latest_result, load_slide

    slide = load_slide(session, slide_id)
    latest: dict[str, Any] = {}
    for inst in slide.instances:
        if inst.state != InstanceState.STORED:
            continue
        kept = latest.get(inst.sop_instance_uid)
        if kept is None or inst.version > kept.version:
            latest[inst.sop_instance_uid] = inst
    if not latest:
        raise PictureError("no stored instances of this slide (purged or never received)")
    _job, result = latest_result(slide)
    seg = list(result.seg_instances) if result else []
    digests = sorted(i.sha256 for i in latest.values()) + sorted(i.sha256 for i in seg)
    key = hashlib.sha256(f"{max_pixels}:{':'.join(digests)}".encode()).hexdigest()
    png = cache.get(key)
    if png is None:
        png = render_overlay_png(
            slide_paths=[store.abspath(i.path) for i in latest.values()],
            seg_paths=[store.abspath(i.path) for i in seg],
            max_pixels=max_pixels,
        )
        cache.put(key, png)
    return png, key[:32]
