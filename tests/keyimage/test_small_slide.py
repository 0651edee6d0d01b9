"""The key image of a slide smaller than the thumbnail asked for: the slide at its own size."""

from __future__ import annotations

from pathlib import Path

from unitumour_dicom.keyimage.picture import read_thumbnail
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide


def test_a_slide_smaller_than_the_thumbnail_comes_at_its_own_size(tmp_path: Path) -> None:
    spec = PhantomSpec(width=768, height=512, levels=2, seed=1, label=False, overview=False)
    slide = write_phantom_slide(tmp_path, spec)
    assert read_thumbnail(slide.instance_paths, max_side=1024).shape == (512, 768, 3)
    assert read_thumbnail(slide.instance_paths, max_side=384).shape == (256, 384, 3)
