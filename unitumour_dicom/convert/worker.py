"""The converter itself: one vendor file to DICOM VL WSI instances, with wsidicomizer.

This file runs in the converter's own virtual environment (``.venv-convert``, made by ``make
venv``), never in the core's: wsidicomizer pins an older wsidicom than the core uses. It is a
standalone script (``python -I worker.py SRC OUT_DIR --json-metadata FILE``) that imports only
the standard library and what wsidicomizer brings; the core calls it as a subprocess through
:mod:`unitumour_dicom.convert.runner` and never imports it.

The metadata file holds ``dataset`` (flat DICOM keywords and values, already checked by the
core: patient, study, container), ``uid_seed`` (the source's sha256: every UID made here is
derived from it, so converting the same bytes again yields the same study, series and
instance UIDs), ``content_datetime`` (YYYYMMDDHHMMSS, fixed by the caller for the same
reason), ``tile_size`` and ``workers``. On success the last line of standard output is
``UNITUMOUR-CONVERT-RESULT {json}``: the files written and what was read from the source.
Any failure exits non-zero with the reason on standard error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "UNITUMOUR-CONVERT-RESULT "

#: Scanner makers by the opentile reader that recognised the file, used only where the file
#: names none itself (wsidicomizer writes "Unknown" otherwise).
_MAKER_BY_TILER = {
    "SvsTiler": "Aperio",
    "NdpiTiler": "Hamamatsu",
    "PhilipsTiler": "Philips",
    "PhilipsTiffTiler": "Philips",
    "HistechTiffTiler": "3DHISTECH",
}


def derived_uid_generator(seed: str):
    """UIDs under 2.25 from ``seed`` and a counter: the same source gives the same UIDs."""
    from pydicom.uid import UID

    counter = 0

    def generate() -> UID:
        nonlocal counter
        counter += 1
        digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        return UID(f"2.25.{int.from_bytes(digest[:16], 'big')}")

    return generate


def read_source_facts(src: Path) -> dict[str, Any]:
    """What the vendor file says about its optics and scanner, for what wsidicomizer omits."""
    facts: dict[str, Any] = {"reader": None, "objective_power": None, "manufacturer": None}
    try:
        from opentile import OpenTile

        with OpenTile.open(src) as tiler:
            name = type(tiler).__name__
            facts["reader"] = f"opentile:{name}"
            facts["manufacturer"] = _MAKER_BY_TILER.get(name)
            facts["objective_power"] = tiler.metadata.magnification
            facts["mpp"] = [float(v) for v in tiler.get_level(0).pixel_spacing.to_tuple()]
            return facts
    except Exception as exc:  # not an opentile format: wsidicomizer picks another reader
        facts["opentile_error"] = str(exc)[:300]
    try:
        import openslide

        with openslide.OpenSlide(str(src)) as slide:
            facts["reader"] = f"openslide:{slide.properties.get('openslide.vendor', '')}"
            power = slide.properties.get("openslide.objective-power")
            facts["objective_power"] = float(power) if power else None
    except Exception as exc:
        facts["openslide_error"] = str(exc)[:300]
    return facts


def stamp_icc_profile(profile: bytes, content_datetime: str) -> bytes:
    """The profile with its creation time (header bytes 24-35) set to ``content_datetime``:
    the sRGB profile made for files without one is stamped with the time it was made. Left
    as it is when it carries a profile ID (an MD5 over the header)."""
    if len(profile) < 128 or any(profile[84:100]):
        return profile
    parts = [
        content_datetime[i : i + n] for i, n in ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2))
    ]
    stamp = b"".join(int(p).to_bytes(2, "big") for p in parts)
    return profile[:24] + stamp + profile[36:]


def make_post_processor(
    attributes: dict[str, str], facts: dict[str, Any], content_datetime: str | None = None
):
    """Set the patient, study and container attributes the core resolved, and the objective
    power the file states, on every dataset wsidicomizer writes."""

    def post_process(dataset, metadata):
        for keyword, value in attributes.items():
            setattr(dataset, keyword, value)
        if content_datetime:
            for item in dataset.get("OpticalPathSequence", []):
                if "ICCProfile" in item:
                    item.ICCProfile = stamp_icc_profile(bytes(item.ICCProfile), content_datetime)
        power = facts.get("objective_power")
        if power:
            for item in dataset.get("OpticalPathSequence", []):
                if "ObjectiveLensPower" not in item:
                    item.ObjectiveLensPower = f"{float(power):g}"
        return dataset

    return post_process


def fix_content_datetime(value: str | None) -> None:
    """Make wsidicom stamp ``value`` (YYYYMMDDHHMMSS) as Content Date and Time, not the time
    of writing, so that converting the same file again writes the same bytes (a retry after a
    crash then re-admits duplicates, not new versions). wsidicom 0.31 (pinned) calls
    ``datetime.now()`` of its writer module; that name is replaced here, in this process only.
    Without it, the files differ in Content Time alone."""
    if not value:
        return
    from datetime import datetime

    try:
        from wsidicom.file.io import wsidicom_writer
    except ImportError:
        return
    fixed = datetime.strptime(value, "%Y%m%d%H%M%S")

    class _FixedNow(datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    if getattr(wsidicom_writer, "datetime", None) is datetime:
        wsidicom_writer.datetime = _FixedNow


def convert(src: Path, out_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    from wsidicom.metadata import Equipment
    from wsidicomizer import WsiDicomizer
    from wsidicomizer.metadata import WsiDicomizerMetadata

    facts = read_source_facts(src)
    fix_content_datetime(spec.get("content_datetime"))
    default_metadata = None
    if facts.get("manufacturer"):
        default_metadata = WsiDicomizerMetadata(
            equipment=Equipment(manufacturer=facts["manufacturer"])
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    files = WsiDicomizer.convert(
        filepath=src,
        output_path=out_dir,
        default_metadata=default_metadata,
        tile_size=int(spec.get("tile_size", 512)),
        uid_generator=derived_uid_generator(str(spec["uid_seed"])),
        metadata_post_processor=make_post_processor(
            dict(spec.get("dataset", {})), facts, spec.get("content_datetime")
        ),
        workers=int(spec.get("workers", 1)),
    )
    return {"files": sorted(str(Path(f).resolve()) for f in files), "source": facts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert one vendor WSI file to DICOM.")
    parser.add_argument("src", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--json-metadata", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = json.loads(args.json_metadata.read_text(encoding="utf-8"))
    try:
        result = convert(args.src, args.out_dir, spec)
    except Exception as exc:
        print(f"conversion failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if not result["files"]:
        print("conversion failed: wsidicomizer wrote no files", file=sys.stderr)
        return 2
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
