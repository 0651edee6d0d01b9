"""The demo's library side: its settings load as the services load them, storescu options,
where the EBHI-Seg data is looked for, the stage words read from the database, and the
scoring of a SEG (a perfect SEG scores 1; one on another slide is refused, not scored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit

from unitumour_dicom.config import load_settings
from unitumour_dicom.config.sections import SegSettings
from unitumour_dicom.db import Delivery, Instance, Job, Result, Slide
from unitumour_dicom.demo import (
    DemoPorts,
    SlideProgress,
    build_samples,
    demo_settings,
    locate_ebhi_data,
    received_seg_files,
    score_seg,
    settings_toml,
    slide_progress,
    storescu_transfer_option,
)
from unitumour_dicom.demo.errors import DemoError
from unitumour_dicom.evaluate.reference import ReferenceError
from unitumour_dicom.seg import AlgorithmInfo, write_seg_pyramid
from unitumour_dicom.slide.mask import SlideMask
from unitumour_dicom.store import FileStore
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

pytestmark = pytest.mark.unittest


def test_settings_file_loads_with_the_demo_ports_callers_and_pacs(tmp_path: Path):
    ports = DemoPorts(listener=11999, web=18080, pacs=11998)
    config = tmp_path / "unitumour.toml"
    text = settings_toml(demo_settings(tmp_path / "data dir ü", ports, quiet_seconds=2.5))
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config)
    assert settings.data_dir == (tmp_path / "data dir ü").resolve()
    assert settings.database_url.startswith("sqlite:///")
    assert (settings.listener.port, settings.web.port) == (11999, 18080)
    assert not settings.listener.accept_any_caller
    assert [c.ae_title for c in settings.listener.callers] == ["DEMOSCANNER"]
    assert settings.listener.quiet_seconds == 2.5
    [pacs] = settings.delivery.destinations
    assert (pacs.ae_title, pacs.port, settings.delivery.always_to) == (
        "DEMOPACS",
        11998,
        ["demo-pacs"],
    )
    assert settings.model.device == "cpu"
    with pytest.raises(ValueError, match="cannot write nan"):
        settings_toml({"listener": {"quiet_seconds": float("nan")}})


def test_storescu_proposes_the_files_own_transfer_syntax():
    assert storescu_transfer_option(JPEGBaseline8Bit) == "-xy"
    assert storescu_transfer_option("1.2.840.10008.1.2.1") == "-xe"
    with pytest.raises(ValueError, match="no storescu option"):
        storescu_transfer_option("1.2.840.10008.1.2.4.201")  # HTJ2K: DCMTK has none


def test_data_is_looked_for_in_the_option_then_the_environment(tmp_path, monkeypatch):
    data = tmp_path / "ebhi"
    data.mkdir()
    (data / "manifest.csv").write_text("image,mask,cls,case,split\n")
    assert locate_ebhi_data(data) == (data, [data])
    monkeypatch.setenv("UNITUMOUR_DEMO_DATA", str(data))
    assert locate_ebhi_data(None)[0] == data
    found, looked = locate_ebhi_data(tmp_path / "elsewhere")
    assert found is None and looked == [tmp_path / "elsewhere"]
    monkeypatch.delenv("UNITUMOUR_DEMO_DATA")
    found, looked = locate_ebhi_data(None)  # the repository's sibling shared/data
    assert looked and looked[0].parts[-3:] == ("shared", "data", "ebhi-seg")


def test_stage_words_and_reasons():
    assert SlideProgress("1.2").stage == "waiting"
    assert SlideProgress("1.2", instances=1).stage == "received 1 instance"
    queued = SlideProgress(
        "1.2", instances=3, slide_id=1, slide_state="settled", job_id=1, job_state="queued"
    )
    assert queued.stage == "settled, job queued" and not queued.finished
    failed = SlideProgress("1.2", slide_id=1, job_id=1, job_state="failed", job_error="boom")
    assert (failed.stage, failed.finished, failed.why) == ("job failed", True, "boom")
    late = SlideProgress("1.2", result_id=1, delivery_state="pending", delivery_error="refused")
    assert (late.stage, late.finished, late.why) == ("SEG written, delivering", False, "refused")
    gone = SlideProgress("1.2", slide_id=1, slide_state="unprocessable", slide_reason="no level")
    assert (gone.stage, gone.why) == ("unprocessable", "no level")


def test_slide_progress_follows_the_rows(runtime):
    with runtime.session() as session:
        slide = Slide(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4", state="settled")
        session.add(slide)
        session.flush()
        for n in range(2):
            session.add(
                Instance(
                    sop_instance_uid=f"1.2.3.4.{n}",
                    sop_class_uid="1.2",
                    transfer_syntax_uid="1.2",
                    study_instance_uid="1.2.3",
                    series_instance_uid="1.2.3.4",
                    sha256="0" * 64,
                    size_bytes=1,
                    path=f"x/{n}",
                    slide_id=slide.id,
                )
            )
        job = Job(slide_id=slide.id, state="running", attempts=1, timings={"inference": 1.5})
        session.add(job)
        session.commit()
        assert slide_progress(session, "1.2.3.4").stage == "job running"
        assert slide_progress(session, "9.9").stage == "waiting"
        job.state = "succeeded"
        result = Result(
            job_id=job.id,
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.3.5",
            segmentation_type="BINARY",
            tumour_area_mm2=0.5,
            tissue_area_mm2=2.0,
        )
        session.add(result)
        session.flush()
        session.add(
            Delivery(
                result_id=result.id,
                destination="pacs",
                ae_title="PACS",
                host="h",
                port=104,
                state="delivered",
                attempts=1,
            )
        )
        session.commit()
        progress = slide_progress(session, "1.2.3.4")
    assert (progress.stage, progress.instances, progress.tumour_area_mm2) == ("delivered", 2, 0.5)
    assert progress.timings == {"inference": 1.5} and progress.seg_series_uid == "1.2.3.5"


def make_seg_pyramid(phantom, out: Path) -> list[Path]:
    """The project's SEG writer on the phantom's known mask at 1 µm/px, as a model hands it."""
    store = FileStore(out)
    volume = [pydicom.dcmread(p, stop_before_pixels=True) for lv in phantom.level_paths for p in lv]
    pyramid = write_seg_pyramid(
        source_datasets=volume,
        mask=phantom.tumour_mask(1.0),
        probability=None,
        algorithm=AlgorithmInfo(name="unet-test", version="1.0.0"),
        settings=SegSettings(),
        uid_seed=f"demo-tests-{phantom.series_uid}",
        store=store,
    )
    return [store.abspath(i.path) for i in sorted(pyramid.instances, key=lambda i: i.level)]


@pytest.fixture(scope="module")
def phantom_and_seg(tmp_path_factory: pytest.TempPathFactory):
    phantom = write_phantom_slide(
        tmp_path_factory.mktemp("phantom"),
        PhantomSpec(width=1024, height=768, levels=3, seed=5, label=False, overview=False),
    )
    return phantom, make_seg_pyramid(phantom, tmp_path_factory.mktemp("seg"))


def test_a_seg_of_the_known_mask_scores_one_and_is_found_among_other_files(
    phantom_and_seg, tmp_path: Path
):
    phantom, seg_files = phantom_and_seg
    pacs = tmp_path / "pacs"
    pacs.mkdir()
    for i, path in enumerate(seg_files):
        (pacs / f"SEG.{i}").write_bytes(path.read_bytes())
    (pacs / "partial").write_bytes(b"\x00" * 10)  # not (yet) DICOM: skipped
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in seg_files]
    found = received_seg_files(pacs, uids)
    assert sorted(found) == sorted(uids)
    truth = phantom.tumour_mask(1.0)
    score = score_seg(
        list(found.values()),
        truth,
        series_uid=phantom.series_uid,
        frame_of_reference_uid=phantom.frame_of_reference_uid,
        base_mpp=phantom.mpp,
    )
    assert score.dice == pytest.approx(1.0)
    assert score.seg_tumour_mm2 == pytest.approx(truth.area_mm2())
    assert score.referenced_series_uids == (phantom.series_uid,)
    shifted = SlideMask(np.roll(truth.array, 40, axis=1), truth.mpp)
    worse = score_seg(
        seg_files,
        shifted,
        series_uid=phantom.series_uid,
        frame_of_reference_uid=phantom.frame_of_reference_uid,
        base_mpp=0.5,
    )
    assert worse.dice < 0.9


def test_a_seg_of_another_slide_is_refused(phantom_and_seg):
    phantom, seg_files = phantom_and_seg
    truth = phantom.tumour_mask(1.0)
    common = {"base_mpp": phantom.mpp}
    with pytest.raises(DemoError, match=r"not the slide's 1\.2\.3"):
        score_seg(
            seg_files,
            truth,
            series_uid="1.2.3",
            frame_of_reference_uid=phantom.frame_of_reference_uid,
            **common,
        )
    with pytest.raises(ReferenceError, match="frame of reference"):
        score_seg(
            seg_files,
            truth,
            series_uid=phantom.series_uid,
            frame_of_reference_uid="1.2.3.999",
            **common,
        )
    with pytest.raises(DemoError, match="is not a Segmentation"):
        score_seg(
            [phantom.level_paths[0][0]],
            truth,
            series_uid=phantom.series_uid,
            frame_of_reference_uid=phantom.frame_of_reference_uid,
            **common,
        )


def test_samples_without_the_data_are_the_phantom_only(tmp_path: Path):
    samples = build_samples(tmp_path, ebhi_data=None, phantom_size=(512, 384), mosaic_images=4)
    assert [s.name for s in samples] == ["phantom"]
    [phantom] = samples
    assert phantom.transfer_syntax_uid == JPEGBaseline8Bit
    assert phantom.patient_id == "DEMO-PHANTOM-0000"
    assert all(p.is_file() for p in phantom.files)
    assert phantom.tumour_mask(2.0).mpp == 2.0
