"""Does a received series open as a whole-slide image the pipeline can process?

Run once per slide when its quiet time expires. Metadata only: each file's header is read up
to Pixel Data and wsidicom builds the pyramid from headers and offset tables; no frame is
decoded. Every instance that will not take part (a level wsidicom leaves out, a monochrome
channel, a concatenation with parts missing) is named in the outcome, never dropped silently.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import UID
from wsidicom import WsiDicom
from wsidicom.codec.decoder import Decoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PyramidCheck:
    """The verdict on a series: usable or not, and the words that say why."""

    usable: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _FileHeader:
    path: Path
    sop_instance_uid: str
    flavor: str
    transfer_syntax: UID
    samples_per_pixel: int
    bits_stored: int
    photometric: str
    columns: int
    rows: int
    concatenation_uid: str | None
    concatenation_number: int | None
    concatenation_total: int | None


def _read_header(path: Path) -> _FileHeader:
    ds = dcmread(path, stop_before_pixels=True)
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    concatenation_uid = ds.get("ConcatenationUID")
    return _FileHeader(
        path=path,
        sop_instance_uid=str(ds.SOPInstanceUID),
        flavor=image_type[2] if len(image_type) > 2 else "",
        transfer_syntax=UID(str(ds.file_meta.TransferSyntaxUID)),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1)),
        bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 8))),
        photometric=str(ds.get("PhotometricInterpretation", "")),
        columns=int(ds.get("TotalPixelMatrixColumns", 0)),
        rows=int(ds.get("TotalPixelMatrixRows", 0)),
        concatenation_uid=str(concatenation_uid) if concatenation_uid else None,
        concatenation_number=ds.get("InConcatenationNumber"),
        concatenation_total=ds.get("InConcatenationTotalNumber"),
    )


def _missing_concatenation_parts(volumes: list[_FileHeader]) -> list[str]:
    problems = []
    by_uid: dict[str, list[_FileHeader]] = defaultdict(list)
    for header in volumes:
        if header.concatenation_uid:
            by_uid[header.concatenation_uid].append(header)
    for uid, parts in sorted(by_uid.items()):
        totals = {p.concatenation_total for p in parts if p.concatenation_total}
        total = max(totals) if totals else len(parts)
        have = {int(p.concatenation_number) for p in parts if p.concatenation_number}
        missing = sorted(set(range(1, total + 1)) - have)
        if missing:
            problems.append(
                f"concatenation {uid} ({parts[0].columns}x{parts[0].rows}) lacks part(s) "
                f"{', '.join(map(str, missing))} of {total}"
            )
    return problems


def check_pyramid(paths: list[Path]) -> PyramidCheck:
    """Open the series' files as a WSI, metadata only, and say whether the pipeline can use it."""
    headers: list[_FileHeader] = []
    unreadable: list[str] = []
    for path in paths:
        try:
            headers.append(_read_header(path))
        except Exception as exc:  # a stored file that no longer parses is reported, not fatal
            unreadable.append(f"{path.name}: {exc}")
    flavors: dict[str, int] = defaultdict(int)
    for header in headers:
        flavors[header.flavor or "unknown"] += 1
    details: dict[str, Any] = {"instances": len(paths), "image_types": dict(flavors)}
    if unreadable:
        details["unreadable"] = unreadable
    volumes = [h for h in headers if h.flavor == "VOLUME"]
    if not volumes:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(flavors.items())) or "nothing readable"
        return PyramidCheck(False, f"the series holds no VOLUME image ({kinds})", details)

    colour = [h for h in volumes if h.samples_per_pixel == 3]
    if not colour:
        photometric = sorted({h.photometric for h in volumes})
        return PyramidCheck(
            False,
            "the H&E model needs colour (3-sample) brightfield images; the levels are "
            f"{', '.join(photometric)} (fluorescence or another modality)",
            details,
        )
    ignored = [
        f"{h.sop_instance_uid} ({h.photometric}, not colour)" for h in volumes if h not in colour
    ]
    undecodable = sorted(
        {
            h.transfer_syntax.name
            for h in colour
            if Decoder.select_decoder(h.transfer_syntax, h.samples_per_pixel, h.bits_stored) is None
        }
    )
    if undecodable:
        return PyramidCheck(
            False,
            f"no decoder here for the frames' transfer syntax: {', '.join(undecodable)}",
            details,
        )
    missing = _missing_concatenation_parts(colour)
    if missing:
        details["incomplete_concatenations"] = missing
        return PyramidCheck(False, "; ".join(missing), details)

    used_paths = [h.path for h in headers if h not in volumes or h in colour]
    try:
        wsi = WsiDicom.open(used_paths)
    except Exception as exc:
        return PyramidCheck(False, f"wsidicom cannot open the series: {exc}", details)
    try:
        used_uids: set[str] = set()
        for pyramid in wsi.pyramids:
            for level in pyramid.levels:
                for dataset in level.datasets:
                    used_uids.add(str(dataset.uids.instance))
        ignored += [
            f"{h.sop_instance_uid} ({h.columns}x{h.rows}, not part of a pyramid)"
            for h in colour
            if h.sop_instance_uid not in used_uids
        ]
        base = wsi.pyramid.base_level
        mpp = base.mpp
        if mpp is None or not (mpp.width > 0 and mpp.height > 0):
            return PyramidCheck(False, "the base level has no pixel spacing", details)
        levels = wsi.pyramid.levels
        details.update(
            {
                "pyramids": len(wsi.pyramids),
                "levels": [
                    {"size": [lv.size.width, lv.size.height], "mpp": lv.mpp.width} for lv in levels
                ],
                "base_size": [base.size.width, base.size.height],
                "base_mpp": [mpp.width, mpp.height],
                "tile_size": [base.tile_size.width, base.tile_size.height],
                "optical_paths": list(base.optical_paths),
                "focal_planes": [float(p) for p in base.focal_planes],
                "labels": 0 if wsi.labels is None else len(wsi.labels),
                "overviews": 0 if wsi.overviews is None else len(wsi.overviews),
            }
        )
    except Exception as exc:
        return PyramidCheck(False, f"wsidicom cannot read the pyramid: {exc}", details)
    finally:
        wsi.close()
    parts = [
        f"pyramid of {len(levels)} level(s), base {base.size.width}x{base.size.height} px at "
        f"{mpp.width:.4g} µm/px, tiles {base.tile_size.width}x{base.tile_size.height}"
    ]
    if len(details["optical_paths"]) > 1 or len(details["focal_planes"]) > 1:
        parts.append(
            f"{len(details['optical_paths'])} optical path(s), "
            f"{len(details['focal_planes'])} focal plane(s): the pipeline reads the first of each"
        )
    if len(wsi.pyramids) > 1:
        parts.append(f"{len(wsi.pyramids)} pyramids: the pipeline reads the first")
    if ignored or unreadable:
        details["ignored"] = ignored
        parts.append(
            f"{len(ignored) + len(unreadable)} instance(s) not used: "
            + "; ".join(ignored + unreadable)
        )
    return PyramidCheck(True, "; ".join(parts), details)
