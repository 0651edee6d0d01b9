"""The demo's sample slides: a phantom (analytic ground truth) and, when the EBHI-Seg data is
at hand, a mosaic of its test images (the data set's own carcinoma masks as ground truth)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from ..slide.mask import SlideMask
from ..synthetic import PhantomSpec, write_phantom_slide
from ..synthetic.mosaic import write_mosaic_slide

logger = logging.getLogger(__name__)

DATA_ENV = "UNITUMOUR_DEMO_DATA"
EBHI_MANIFEST = "manifest.csv"

#: DCMTK storescu's option proposing each transfer syntax the samples may be written in.
_STORESCU_OPTIONS = {
    JPEGBaseline8Bit: "-xy",
    ExplicitVRLittleEndian: "-xe",
    JPEG2000Lossless: "-xv",
    JPEG2000: "-xw",
    JPEGLSLossless: "-xt",
    RLELossless: "-xr",
}


@dataclass(frozen=True)
class SampleSlide:
    """One slide the demo sends, with what is needed to judge the SEG that comes back."""

    name: str  # "phantom" or "mosaic"
    description: str
    folder: Path
    files: tuple[Path, ...]
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str | None
    patient_id: str
    mpp: float
    size: tuple[int, int]
    transfer_syntax_uid: str
    truth: Callable[[float], SlideMask]  # the known tumour mask at a pixel size, µm

    def tumour_mask(self, mpp: float) -> SlideMask:
        return self.truth(mpp)


def storescu_transfer_option(transfer_syntax_uid: str) -> str:
    """The storescu option (``-xy`` for JPEG baseline...) that proposes the files' syntax,
    so that they travel as they are, without transcoding."""
    try:
        return _STORESCU_OPTIONS[UID(transfer_syntax_uid)]
    except KeyError:
        raise ValueError(
            f"no storescu option proposes transfer syntax {transfer_syntax_uid}"
        ) from None


def _repository_root() -> Path | None:
    """The source checkout this package runs from (editable install), if it is one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def locate_ebhi_data(explicit: Path | None = None) -> tuple[Path | None, list[Path]]:
    """The EBHI-Seg folder (holding manifest.csv) and every place that was looked at.

    Order: ``explicit`` (--data), then $UNITUMOUR_DEMO_DATA, then the shared data beside the
    repository (``<repo>/../shared/data/ebhi-seg``). None when none holds a manifest.
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    elif os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]))
    else:
        repo = _repository_root()
        if repo is not None:
            candidates.append(repo.parent / "shared" / "data" / "ebhi-seg")
    for folder in candidates:
        if (folder / EBHI_MANIFEST).is_file():
            return folder, candidates
    return None, candidates


def _transfer_syntax(path: Path) -> str:
    return str(pydicom.filereader.read_file_meta_info(path).TransferSyntaxUID)


def build_samples(
    out_dir: Path,
    *,
    ebhi_data: Path | None,
    phantom_size: tuple[int, int] = (4096, 3072),
    mosaic_images: int = 12,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[SampleSlide]:
    """Write the sample slides under ``out_dir`` (``phantom/``, ``mosaic/``), replacing what
    a previous run left there. No mosaic when ``ebhi_data`` is None or ``mosaic_images`` is 0.
    ``progress(name, done, total)`` follows the tiles of each slide."""
    out_dir = Path(out_dir)
    width, height = phantom_size
    spec = PhantomSpec(
        width=width,
        height=height,
        seed=seed,
        n_tumours=3,
        patient_id=f"DEMO-PHANTOM-{seed:04d}",
        patient_name="Demo^Phantom",
        accession_number=f"DEMO{seed:04d}",
    )
    phantom = write_phantom_slide(
        out_dir / "phantom",
        spec,
        overwrite=True,
        progress=(lambda d, t: progress("phantom", d, t)) if progress else None,
    )
    samples = [
        SampleSlide(
            name="phantom",
            description=f"phantom H&E, {width} x {height} px at {spec.mpp:g} µm/px, seed {seed}",
            folder=phantom.root,
            files=tuple(phantom.instance_paths),
            study_uid=phantom.study_uid,
            series_uid=phantom.series_uid,
            frame_of_reference_uid=phantom.frame_of_reference_uid,
            patient_id=spec.patient_id,
            mpp=phantom.mpp,
            size=phantom.size,
            transfer_syntax_uid=_transfer_syntax(phantom.instance_paths[0]),
            truth=phantom.tumour_mask,
        )
    ]
    if ebhi_data is not None and mosaic_images > 0:
        mosaic = write_mosaic_slide(
            out_dir / "mosaic",
            Path(ebhi_data) / EBHI_MANIFEST,
            split="test",
            n=mosaic_images,
            seed=seed,
            overwrite=True,
            progress=(lambda d, t: progress("mosaic", d, t)) if progress else None,
        )
        classes = sorted({t.cls for t in mosaic.tiles})
        samples.append(
            SampleSlide(
                name="mosaic",
                description=(
                    f"EBHI-Seg mosaic, {len(mosaic.tiles)} test images ({', '.join(classes)}), "
                    f"{mosaic.size[0]} x {mosaic.size[1]} px at {mosaic.mpp:g} µm/px"
                ),
                folder=mosaic.root,
                files=tuple(mosaic.instance_paths),
                study_uid=mosaic.study_uid,
                series_uid=mosaic.series_uid,
                frame_of_reference_uid=mosaic.frame_of_reference_uid,
                patient_id=mosaic.spec.patient_id,
                mpp=mosaic.mpp,
                size=mosaic.size,
                transfer_syntax_uid=_transfer_syntax(mosaic.instance_paths[0]),
                truth=mosaic.tumour_mask,
            )
        )
    return samples
