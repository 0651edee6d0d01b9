"""PhantomSpec: every input checked when the spec is made, with a message that says why."""

from __future__ import annotations

import dataclasses

import pytest

from unitumour_dicom.errors import InvalidUIDError
from unitumour_dicom.synthetic import TRANSFER_SYNTAX_NAMES, PhantomSpec
from unitumour_dicom.synthetic.dicom_header import PhantomUids

pytestmark = pytest.mark.unittest


def test_defaults_are_the_documented_ones() -> None:
    spec = PhantomSpec()
    assert (spec.width, spec.height, spec.tile_size, spec.levels, spec.mpp) == (
        4096,
        3072,
        256,
        3,
        0.5,
    )
    assert spec.transfer_syntax == "jpeg_baseline"
    assert spec.dimension_organization == "TILED_FULL"
    assert spec.label and spec.overview and not spec.omit_optional


def test_levels_halve_and_round_up() -> None:
    spec = PhantomSpec(width=1001, height=333, levels=4)
    assert spec.level_sizes == [(1001, 333), (501, 167), (251, 84), (126, 42)]
    assert spec.level_mpps == [0.5, 1.0, 2.0, 4.0]


def test_a_40k_slide_is_a_valid_spec() -> None:
    spec = PhantomSpec(width=40_000, height=40_000, levels=6)
    assert spec.level_sizes[-1] == (1250, 1250)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("width", 0, "width must lie in"),
        ("height", 2**21, "height must lie in"),
        ("width", 10.5, "width must be an integer"),
        ("tile_size", 100, "multiple of 16"),
        ("tile_size", 8, "tile_size must lie in"),
        ("levels", 0, "levels must lie in"),
        ("levels", 12, "below one pixel"),
        ("mpp", 0.0, "mpp must lie in"),
        ("mpp", float("nan"), "finite"),
        ("seed", -1, "seed must lie in"),
        ("n_tumours", 65, "n_tumours must lie in"),
        ("layout", "grid", "layout must be"),
        ("jpeg_quality", 0, "jpeg_quality must lie in"),
        ("dimension_organization", "TILED", "dimension_organization must be"),
        ("concatenation_frames", 0, "concatenation_frames must lie in"),
        ("transfer_syntax", "jpegxl", "is not one of"),
        ("patient_name", "A\\B", "backslashes"),
        ("patient_id", "X" * 65, "at most 64"),
        ("accession_number", "A" * 17, "at most 16"),
        ("label", "yes", "label must be a bool"),
    ],
)
def test_bad_values_are_refused_with_a_reason(field: str, value: object, message: str) -> None:
    base = {"width": 1024, "height": 768}
    with pytest.raises(ValueError, match=message):
        PhantomSpec(**{**base, field: value})


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2.03", "1." + "1" * 70, "", "1..2"])
def test_hostile_uids_are_refused(uid: str) -> None:
    with pytest.raises(InvalidUIDError):
        PhantomSpec(study_uid=uid)
    with pytest.raises(InvalidUIDError):
        PhantomSpec(series_uid=uid)


def test_native_pixel_data_must_fit_one_element() -> None:
    with pytest.raises(ValueError, match="exceed the 4 GiB"):
        PhantomSpec(width=40_000, height=40_000, transfer_syntax="explicit_vr_little_endian")
    # Concatenated into instances of 1,000 frames (196 MB each) it is fine.
    PhantomSpec(
        width=40_000,
        height=40_000,
        transfer_syntax="explicit_vr_little_endian",
        concatenation_frames=1000,
    )


def test_round_trip_through_a_dict() -> None:
    spec = PhantomSpec(seed=5, pen_mark=True, transfer_syntax="rle", concatenation_frames=3)
    assert PhantomSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown phantom spec fields: colour"):
        PhantomSpec.from_dict({**spec.to_dict(), "colour": "blue"})


def test_uids_follow_the_whole_spec_not_only_the_seed() -> None:
    a = PhantomUids.from_spec(PhantomSpec(seed=1))
    assert a == PhantomUids.from_spec(PhantomSpec(seed=1))
    b = PhantomUids.from_spec(PhantomSpec(seed=1, width=2048))
    assert {a.study, a.series, a.frame_of_reference} & {
        b.study,
        b.series,
        b.frame_of_reference,
    } == set()
    assert a.instance("level-0") != a.instance("level-1")
    given = PhantomUids.from_spec(PhantomSpec(study_uid="1.2.3.4", series_uid="1.2.3.5"))
    assert (given.study, given.series) == ("1.2.3.4", "1.2.3.5")


def test_every_transfer_syntax_name_has_a_codec() -> None:
    from unitumour_dicom.synthetic.codecs import codec_for

    for name in TRANSFER_SYNTAX_NAMES:
        assert codec_for(name).name == name


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PhantomSpec().width = 5  # type: ignore[misc]
