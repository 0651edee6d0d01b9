"""Fixtures of the web tests: a real phantom slide and its SEG pyramid in a real store, the
database rows that the listener, worker and sender would have written about them, users,
and the app (in-process, or served by uvicorn on a free port for real clients)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from unitumour_services.web import create_app
from unitumour_services.web.command import UVICORN_OPTIONS
from unitumour_services.web.viewer_assets import fetch_viewer

from unitumour_dicom import users
from unitumour_dicom.config import Settings
from unitumour_dicom.config.sections import SegSettings
from unitumour_dicom.db import (
    Association,
    Delivery,
    DeliveryAttempt,
    Instance,
    Job,
    ModelVersion,
    Result,
    ResultInstance,
    Slide,
    dispose_engines,
    migrate,
    record_event,
)
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.seg import AlgorithmInfo, write_seg_pyramid
from unitumour_dicom.store import FileStore
from unitumour_dicom.synthetic import PhantomSlide, PhantomSpec, write_phantom_slide

REPO_ROOT = Path(__file__).resolve().parents[2]
VIEWER_DIR = REPO_ROOT / "var" / "viewer"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "web"
PASSWORD = "correct horse battery"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its lowest cost, so that each log-in of a test does not take half a
    second on a busy 2-core machine; the production parameters are tested in test_users."""
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def phantom_spec(seed: int = 7) -> PhantomSpec:
    """A small phantom slide: 1024 x 768 at 0.5 µm/px, 3 levels, tiles of 256, a label."""
    return PhantomSpec(
        width=1024,
        height=768,
        tile_size=256,
        levels=3,
        seed=seed,
        n_tumours=3,
        n_tissue_pieces=1,
        label=True,
        overview=False,
        patient_id="PHANTOM-WEB",
        patient_name="Phantom^Web",
        accession_number="ACC-WEB-1",
    )


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomSlide:
    return write_phantom_slide(tmp_path_factory.mktemp("phantom"), phantom_spec())


@pytest.fixture(scope="session")
def phantoms(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[int], tuple[PhantomSlide, list[Path]]]:
    """More slides with UIDs of their own (by seed), each with its SEG, made once."""
    made: dict[int, tuple[PhantomSlide, list[Path]]] = {}

    def get(seed: int) -> tuple[PhantomSlide, list[Path]]:
        if seed not in made:
            slide = write_phantom_slide(
                tmp_path_factory.mktemp(f"phantom{seed}"), phantom_spec(seed)
            )
            made[seed] = (slide, make_seg_pyramid(slide, tmp_path_factory.mktemp(f"seg{seed}")))
        return made[seed]

    return get


def make_seg_pyramid(phantom: PhantomSlide, out: Path) -> list[Path]:
    """The SEG pyramid that the pipeline sends for this slide, written by the project's SEG
    writer (BINARY, one instance per pyramid level, on the slide's frame of reference), of
    the phantom's tumour ground truth at 1 µm/px, as a model would hand it over."""
    store = FileStore(out)
    volume = [
        pydicom.dcmread(path, stop_before_pixels=True)
        for level in phantom.level_paths
        for path in level
    ]
    pyramid = write_seg_pyramid(
        source_datasets=volume,
        mask=phantom.tumour_mask(1.0),
        probability=None,
        algorithm=AlgorithmInfo(name="unet-test", version="1.2.0"),
        settings=SegSettings(),
        uid_seed=f"web-tests-{phantom.series_uid}",
        store=store,
    )
    return [store.abspath(i.path) for i in sorted(pyramid.instances, key=lambda i: i.level)]


@pytest.fixture(scope="session")
def seg_files(phantom: PhantomSlide, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_seg_pyramid(phantom, tmp_path_factory.mktemp("seg"))


@dataclass
class SeededCase:
    """What the fixture put in the database and the store, for assertions."""

    slide_id: int
    study_uid: str
    series_uid: str
    seg_series_uid: str
    model_id: int
    job_ids: list[int]
    result_id: int
    delivery_ids: list[int]
    instance_files: dict[str, Path] = field(default_factory=dict)  # SOP UID -> source file
    seg_files: dict[str, Path] = field(default_factory=dict)


def seed_case(
    runtime: Runtime,
    phantom: PhantomSlide,
    seg_paths: list[Path],
    *,
    patient_id: str = "PHANTOM-WEB",
    patient_name: str = "Phantom^Web",
    accession: str = "ACC-WEB-1",
    study_date: str = "20240315",
    source_ae: str = "SCANNER1",
) -> SeededCase:
    """Store the phantom and its SEG and write the rows the services would have written."""
    store = runtime.store
    now = datetime.now(UTC)
    case = SeededCase(0, phantom.study_uid, phantom.series_uid, "", 0, [], 0, [])
    with runtime.session() as db:
        assoc = Association(
            calling_ae=source_ae, called_ae="UNITUMOUR", peer_host="127.0.0.1", state="released"
        )
        db.add(assoc)
        slide = Slide(
            study_instance_uid=phantom.study_uid,
            series_instance_uid=phantom.series_uid,
            frame_of_reference_uid=phantom.frame_of_reference_uid,
            patient_id=patient_id,
            patient_name=patient_name,
            accession_number=accession,
            study_date=study_date,
            source_ae=source_ae,
            state="settled",
            settled_at=now,
        )
        db.add(slide)
        db.flush()
        for path in phantom.instance_paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            tmp = store.new_spool_path()
            shutil.copyfile(path, tmp)
            rel = store.instance_relpath(
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, 1
            )
            stored = store.put_file(tmp, rel)
            db.add(
                Instance(
                    sop_instance_uid=ds.SOPInstanceUID,
                    sop_class_uid=ds.SOPClassUID,
                    transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
                    study_instance_uid=ds.StudyInstanceUID,
                    series_instance_uid=ds.SeriesInstanceUID,
                    image_type="\\".join(ds.ImageType),
                    total_pixel_matrix_columns=ds.get("TotalPixelMatrixColumns"),
                    total_pixel_matrix_rows=ds.get("TotalPixelMatrixRows"),
                    number_of_frames=int(ds.get("NumberOfFrames", 1)),
                    sha256=stored.sha256,
                    size_bytes=stored.size_bytes,
                    path=stored.path,
                    association_id=assoc.id,
                    slide_id=slide.id,
                )
            )
            case.instance_files[ds.SOPInstanceUID] = path
        model = db.query(ModelVersion).filter_by(name="unet-test").one_or_none()
        if model is None:
            model = ModelVersion(
                name="unet-test",
                version="1.2.0",
                weights_sha256="ab" * 32,
                architecture="residual U-Net",
                card={"name": "unet-test", "version": "1.2.0", "intended_use": "tests <only>"},
            )
            db.add(model)
            db.flush()
        failed = Job(
            slide_id=slide.id,
            model_id=model.id,
            state="superseded",
            reason="settled",
            error="CUDA out of memory",
            created_at=now - timedelta(minutes=10),
            finished_at=now - timedelta(minutes=9),
        )
        db.add(failed)
        db.flush()
        job = Job(
            slide_id=slide.id,
            model_id=model.id,
            state="succeeded",
            reason="re-run after failure",
            supersedes_job_id=failed.id,
            attempts=1,
            created_at=now - timedelta(minutes=8),
            started_at=now - timedelta(minutes=7),
            finished_at=now - timedelta(minutes=6),
            device="cpu",
            code_version="0.1.0",
            timings={"read": 1.25, "tissue": 0.5, "infer": 42.0, "seg": 3.5, "store": 0.25},
            inputs={"instances": sorted(case.instance_files)},
            settings={"seg": {"segmentation_type": "BINARY"}},
        )
        db.add(job)
        db.flush()
        seg_series = pydicom.dcmread(seg_paths[0], stop_before_pixels=True).SeriesInstanceUID
        result = Result(
            job_id=job.id,
            study_instance_uid=phantom.study_uid,
            series_instance_uid=seg_series,
            segmentation_type="BINARY",
            tumour_area_mm2=0.0123,
            tissue_area_mm2=0.0456,
        )
        db.add(result)
        db.flush()
        for level, path in enumerate(seg_paths):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            tmp = store.new_spool_path()
            shutil.copyfile(path, tmp)
            stored = store.put_file(
                tmp, store.result_relpath(ds.StudyInstanceUID, seg_series, ds.SOPInstanceUID)
            )
            db.add(
                ResultInstance(
                    result_id=result.id,
                    kind="seg",
                    series_instance_uid=seg_series,
                    sop_instance_uid=ds.SOPInstanceUID,
                    sop_class_uid=ds.SOPClassUID,
                    source_sop_instance_uid=ds.SourceImageSequence[0].ReferencedSOPInstanceUID
                    if "SourceImageSequence" in ds
                    else None,
                    level=level,
                    rows=int(ds.TotalPixelMatrixRows),
                    columns=int(ds.TotalPixelMatrixColumns),
                    path=stored.path,
                    sha256=stored.sha256,
                    size_bytes=stored.size_bytes,
                )
            )
            case.seg_files[ds.SOPInstanceUID] = path
        delivered = Delivery(
            result_id=result.id,
            destination="pacs",
            ae_title="PACS",
            host="127.0.0.1",
            port=11113,
            state="delivered",
            attempts=2,
            delivered_at=now,
        )
        refused = Delivery(
            result_id=result.id,
            destination="archive",
            ae_title="ARCHIVE<1>",
            host="127.0.0.1",
            port=11114,
            state="failed",
            attempts=1,
            last_status=0xA700,
            last_error="Out of resources",
        )
        db.add_all([delivered, refused])
        db.flush()
        db.add_all(
            [
                DeliveryAttempt(
                    delivery_id=delivered.id, ok=False, error="connection refused", finished_at=now
                ),
                DeliveryAttempt(delivery_id=delivered.id, ok=True, status=0, finished_at=now),
                DeliveryAttempt(
                    delivery_id=refused.id, ok=False, status=0xA700, error="Out of resources"
                ),
            ]
        )
        record_event(
            session=db,
            event="slide.settled",
            message="slide settled <b>bold</b>",
            actor="listener",
            slide_id=slide.id,
        )
        record_event(
            session=db,
            event="delivery.delivered",
            message="delivered to PACS",
            actor="sender",
            delivery_id=delivered.id,
        )
        case.slide_id = slide.id
        case.seg_series_uid = seg_series
        case.model_id = model.id
        case.job_ids = [failed.id, job.id]
        case.result_id = result.id
        case.delivery_ids = [delivered.id, refused.id]
    return case


def with_viewer(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"web": settings.web.model_copy(update={"viewer_dir": VIEWER_DIR})}
    )


def plain_http(settings: Settings) -> Settings:
    """The tests' clients speak plain http (TestClient, uvicorn on 127.0.0.1), and a client
    sends a Secure cookie over https only: the cookie is not Secure here, as in the demo."""
    return settings.model_copy(
        update={"web": settings.web.model_copy(update={"secure_cookies": False})}
    )


@pytest.fixture
def web_settings(sqlite_settings: Settings) -> Settings:
    """Settings of the app under test: SQLite (modules whose subject is the SQL override
    this fixture with the both-backends ``settings``), served over plain http."""
    return plain_http(with_viewer(sqlite_settings))


@pytest.fixture
def web_runtime(web_settings: Settings) -> Iterator[Runtime]:
    """A migrated database and an empty store."""
    if web_settings.database_url.startswith("sqlite:///"):
        web_settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(web_settings.database_url)
    yield Runtime(web_settings)
    dispose_engines()


@pytest.fixture
def accounts(web_runtime: Runtime) -> dict[str, str]:
    """An admin, a viewer and a disabled user, all with PASSWORD."""
    with web_runtime.session() as db:
        users.add_user(session=db, username="ada", password=PASSWORD, role="admin")
        users.add_user(session=db, username="vic", password=PASSWORD, role="viewer")
        users.add_user(session=db, username="gone", password=PASSWORD, role="admin")
        users.set_active(session=db, username="gone", active=False)
    return {"admin": "ada", "viewer": "vic", "disabled": "gone"}


@pytest.fixture
def case(web_runtime: Runtime, phantom: PhantomSlide, seg_files: list[Path]) -> SeededCase:
    return seed_case(web_runtime, phantom, seg_files)


class Dispatches:
    """Records what the app handed to the worker hooks."""

    def __init__(self) -> None:
        self.jobs: list[int] = []
        self.deliveries: list[int] = []


@pytest.fixture
def dispatches() -> Dispatches:
    return Dispatches()


@pytest.fixture
def app(web_runtime: Runtime, accounts: dict[str, str], dispatches: Dispatches) -> FastAPI:
    return create_app(
        web_runtime.settings,
        runtime=web_runtime,
        dispatch_job=dispatches.jobs.append,
        dispatch_delivery=dispatches.deliveries.append,
    )


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the API; returns the CSRF token for POSTs."""
    r = client.post("/api/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf_token"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            **UVICORN_OPTIONS,  # as `unitumour web` serves it
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def viewer_dir() -> Path:
    """dicom-microscopy-viewer, installed as `make viewer` does (npm; pinned digest)."""
    fetch_viewer(VIEWER_DIR)
    return VIEWER_DIR
