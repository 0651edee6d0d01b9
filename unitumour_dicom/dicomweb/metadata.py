"""Instance headers as the DICOM JSON Model (PS3.18 Annex F), bulk data by reference.

Binary values above a small threshold (Pixel Data always, ICC profiles, offset tables...)
become a ``BulkDataURI`` that names the element by its path of tags and item indexes, e.g.
``.../bulkdata/00480105/0/00282000`` for the ICC Profile of the first optical path; the same
path finds the value again in :func:`find_bulkdata`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from .errors import BadQueryError, ResourceNotFoundError
from .pixels import PixelDataLayout

log = logging.getLogger(__name__)

BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"}
#: Binary values up to this many bytes go inline (base64); larger ones by reference.
INLINE_THRESHOLD = 1024
PIXEL_DATA = 0x7FE00010
_OMITTED_GROUPS = {0x0002}  # the file meta group is not part of the dataset


def read_header(path: Path) -> Dataset:
    """Everything but Pixel Data (and what follows it)."""
    return pydicom.dcmread(path, stop_before_pixels=True)


def _bulk_path(path: tuple[str, ...]) -> str:
    return "/".join(path)


def dataset_to_json(
    ds: Dataset,
    *,
    bulkdata_uri: str,
    layout: PixelDataLayout | None = None,
    available_transfer_syntax: str | None = None,
) -> dict[str, Any]:
    """``ds`` as a DICOM JSON object; ``bulkdata_uri`` is the instance's bulkdata base URI."""
    out = _to_json(ds, bulkdata_uri, ())
    if layout is not None and (layout.value_offset is not None or layout.needs_full_read):
        out["7FE00010"] = {"vr": layout.pixel_data_vr, "BulkDataURI": f"{bulkdata_uri}/7FE00010"}
    if available_transfer_syntax:
        out["00083002"] = {"vr": "UI", "Value": [available_transfer_syntax]}
    return dict(sorted(out.items()))


def _to_json(ds: Dataset, base: str, path: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag.group in _OMITTED_GROUPS or elem.tag == PIXEL_DATA:
            continue
        key = f"{elem.tag:08X}"
        try:
            out[key] = _element_to_json(elem, base, (*path, key))
        except Exception as exc:  # a malformed value must not hide the rest of the header
            log.warning("element %s not representable in DICOM JSON: %s", key, exc)
    return out


def _element_to_json(elem: DataElement, base: str, path: tuple[str, ...]) -> dict[str, Any]:
    if elem.VR == "SQ":
        items = [_to_json(item, base, (*path, str(i))) for i, item in enumerate(elem.value or [])]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if elem.VR in BINARY_VRS and not elem.is_empty and len(elem.value) > INLINE_THRESHOLD:
        vr = elem.VR if elem.VR in BINARY_VRS - {"OB or OW", "US or OW"} else "OB"
        return {"vr": vr, "BulkDataURI": f"{base}/{_bulk_path(path)}"}
    return elem.to_json_dict(None, 0)


def parse_bulk_path(text: str) -> tuple[int | str, ...]:
    """'00480105/0/00282000' -> (0x00480105, 0, 0x00282000); alternate tag and item index."""
    parts = [p for p in text.strip("/").split("/") if p]
    if not parts or len(parts) % 2 == 0 or len(parts) > 31:
        raise BadQueryError(f"bulk data path {text[:80]!r} is not TAG[/ITEM/TAG]...")
    out: list[int | str] = []
    for i, p in enumerate(parts):
        if i % 2 == 0:
            if len(p) != 8 or any(c not in "0123456789abcdefABCDEF" for c in p):
                raise BadQueryError(f"{p[:20]!r} in a bulk data path is not an 8-digit tag")
            out.append(int(p, 16))
        else:
            if not p.isdigit() or len(p) > 9:
                raise BadQueryError(f"{p[:20]!r} in a bulk data path is not an item index")
            out.append(int(p))
    return tuple(out)


def find_bulkdata(ds: Dataset, path: tuple[int | str, ...]) -> bytes:
    """The value of the binary element at ``path`` (not Pixel Data, which is framed)."""
    current: Dataset = ds
    for i in range(0, len(path) - 1, 2):
        tag, index = Tag(path[i]), int(path[i + 1])
        elem = current.get(tag)
        if elem is None or elem.VR != "SQ" or index >= len(elem.value):
            raise ResourceNotFoundError("no such bulk data element")
        current = elem.value[index]
    elem = current.get(Tag(path[-1]))
    if elem is None or elem.VR not in BINARY_VRS or elem.is_empty:
        raise ResourceNotFoundError("no such bulk data element")
    value = elem.value
    return bytes(value) if not isinstance(value, bytes) else value


class JsonCache:
    """DICOM JSON of recently asked-for instances: a viewer asks for a series' metadata
    several times (slide, then SEG, then again on zoom), and a TILED_SPARSE header with its
    per-frame positions is worth converting once."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int, int, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int, str]) -> dict[str, Any] | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: tuple[str, int, int, str], value: dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
