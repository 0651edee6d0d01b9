"""Real vendor-format files made from a phantom slide, for the converter to read.

The phantom (unitumour_dicom.synthetic) is written as DICOM with its known tumour mask; its
pixels, read back level by level with wsidicom, are written again here as the files scanners
write: an Aperio SVS (the page layout and ImageDescription header that opentile, OpenSlide
and tifffile recognise: base, thumbnail, levels, label, macro), a pyramidal OME-TIFF (levels
as SubIFDs, physical pixel size in the OME-XML) and a generic tiled TIFF (resolution tags
only). All JPEG tiles, as scanners write them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

TILE = 256
QUALITY = 95


def phantom_levels(folder: Path) -> list[np.ndarray]:
    """The phantom's pyramid levels as RGB arrays, base first (read with wsidicom)."""
    from wsidicom import WsiDicom

    with WsiDicom.open(folder) as wsi:
        return [
            np.asarray(wsi.read_region((0, 0), level.level, level.size.to_tuple()).convert("RGB"))
            for level in wsi.levels
        ]


def _svs_description(width: int, height: int, mpp: float, *, base: bool) -> str:
    head = "Aperio Image Library v12.0.15 \r\n"
    size = (
        f"{width}x{height} [0,0 {width}x{height}] ({TILE}x{TILE}) JPEG/RGB Q={QUALITY}"
        if base
        else f"{width}x{height} -> {width}x{height} - "
    )
    return (
        head
        + size
        + "|AppMag = 20|StripeWidth = 2040|ScanScope ID = SS12345|Filename = phantom"
        + f"|Date = 12/03/26|Time = 10:00:00|Time Zone = GMT+0000|MPP = {mpp:g}"
        + "|Left = 25.0|Top = 20.0|LineCameraSkew = 0|LineAreaXOffset = 0|LineAreaYOffset = 0"
    )


def write_svs(path: Path, levels: list[np.ndarray], mpp: float) -> Path:
    """An Aperio SVS: tiled base, stripped thumbnail, tiled levels, label (LZW), macro."""
    # metadata=None: no tifffile "shaped" JSON description, which would hide the SVS layout
    jpeg = {
        "compression": "jpeg",
        "compressionargs": {"level": QUALITY},
        "photometric": "rgb",
        "metadata": None,
    }
    with tifffile.TiffWriter(path) as tif:
        base = levels[0]
        tif.write(
            base,
            tile=(TILE, TILE),
            description=_svs_description(base.shape[1], base.shape[0], mpp, base=True),
            **jpeg,
        )
        thumb = np.ascontiguousarray(levels[-1][::2, ::2])
        tif.write(
            thumb,
            rowsperstrip=16,
            description=_svs_description(thumb.shape[1], thumb.shape[0], mpp, base=False),
            **jpeg,
        )
        for k, level in enumerate(levels[1:], 1):
            tif.write(
                level,
                tile=(TILE, TILE),
                description=_svs_description(
                    level.shape[1], level.shape[0], mpp * 2**k, base=False
                ),
                **jpeg,
            )
        label = np.full((300, 300, 3), 245, np.uint8)
        label[100:200, 50:250] = 20
        tif.write(
            label,
            rowsperstrip=16,
            subfiletype=1,
            compression="lzw",
            photometric="rgb",
            metadata=None,
            description="Aperio Image Library v12.0.15 \r\nlabel 300x300",
        )
        macro = np.full((300, 800, 3), 200, np.uint8)
        tif.write(
            macro,
            rowsperstrip=16,
            subfiletype=9,
            description="Aperio Image Library v12.0.15 \r\nmacro 800x300",
            **jpeg,
        )
    return path


def write_ome_tiff(path: Path, levels: list[np.ndarray], mpp: float) -> Path:
    """A pyramidal OME-TIFF: the base with its reduced levels as SubIFDs, mpp in the OME-XML."""
    jpeg = {"compression": "jpeg", "compressionargs": {"level": QUALITY}, "photometric": "rgb"}
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(
            levels[0],
            subifds=len(levels) - 1,
            tile=(TILE, TILE),
            resolution=(1e4 / mpp, 1e4 / mpp),
            resolutionunit="CENTIMETER",
            metadata={
                "axes": "YXS",
                "PhysicalSizeX": mpp,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": mpp,
                "PhysicalSizeYUnit": "µm",
                "Name": "phantom",
            },
            **jpeg,
        )
        for k, level in enumerate(levels[1:], 1):
            factor = mpp * 2**k
            tif.write(
                level,
                subfiletype=1,
                tile=(TILE, TILE),
                resolution=(1e4 / factor, 1e4 / factor),
                resolutionunit="CENTIMETER",
                **jpeg,
            )
    return path


def write_generic_tiff(path: Path, levels: list[np.ndarray], mpp: float) -> Path:
    """A plain tiled pyramidal TIFF: no vendor header, the pixel size in the resolution tags."""
    # metadata=None: no tifffile "shaped" JSON description, which would hide the SVS layout
    jpeg = {
        "compression": "jpeg",
        "compressionargs": {"level": QUALITY},
        "photometric": "rgb",
        "metadata": None,
    }
    with tifffile.TiffWriter(path) as tif:
        for k, level in enumerate(levels):
            factor = mpp * 2**k
            tif.write(
                level,
                tile=(TILE, TILE),
                subfiletype=0 if k == 0 else 1,
                resolution=(1e4 / factor, 1e4 / factor),
                resolutionunit="CENTIMETER",
                **jpeg,
            )
    return path
