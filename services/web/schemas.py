"""The JSON API's shapes: what each endpoint returns, described in the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Me(Schema):
    username: str
    role: str
    csrf_token: str = Field(description="Echo in the X-CSRF-Token header of every POST.")


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class ModelOut(Schema):
    id: int
    name: str
    version: str
    architecture: str
    weights_sha256: str
    registered_at: datetime


class ModelCardOut(ModelOut):
    card: dict[str, Any]


class CaseSummary(Schema):
    slide_id: int
    patient_id: str | None
    patient_name: str | None
    accession_number: str | None
    study_date: str | None
    study_instance_uid: str
    series_instance_uid: str
    source_ae: str | None
    slide_state: str
    case_state: str = Field(description="State of the latest job, or of the slide if none.")
    latest_job_id: int | None
    model: str | None = Field(description="name version of the model of the latest job.")
    tumour_area_mm2: float | None
    tissue_area_mm2: float | None
    deliveries: dict[str, int] = Field(description="Deliveries of the latest result by state.")
    first_received_at: datetime
    last_received_at: datetime


class CasePage(Schema):
    items: list[CaseSummary]
    total: int
    page: int
    page_size: int


class InstanceOut(Schema):
    id: int
    sop_instance_uid: str
    version: int
    sop_class_uid: str
    transfer_syntax_uid: str
    image_type: str | None
    total_pixel_matrix_columns: int | None
    total_pixel_matrix_rows: int | None
    number_of_frames: int | None
    sha256: str
    size_bytes: int
    state: str
    received_at: datetime
    association_id: int | None
    calling_ae: str | None = None


class ResultInstanceOut(Schema):
    kind: str = Field(description="seg (a SEG level), sr, ann (bulk annotations) or key_image.")
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    source_sop_instance_uid: str | None
    level: int
    rows: int | None
    columns: int | None
    sha256: str
    size_bytes: int


class ResultOut(Schema):
    id: int
    study_instance_uid: str
    series_instance_uid: str
    segmentation_type: str
    tumour_area_mm2: float
    tissue_area_mm2: float
    created_at: datetime
    instances: list[ResultInstanceOut]


class AttemptOut(Schema):
    id: int
    started_at: datetime
    finished_at: datetime | None
    ok: bool
    status: int | None
    error: str | None


class DeliveryOut(Schema):
    id: int
    result_id: int
    destination: str
    ae_title: str
    host: str
    port: int
    state: str
    attempts: int
    next_attempt_at: datetime | None
    give_up_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempts_log: list[AttemptOut]


class JobOut(Schema):
    id: int
    uuid: str
    state: str
    reason: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    supersedes_job_id: int | None
    code_version: str | None
    device: str | None
    model: ModelOut | None
    timings: dict[str, Any] | None = Field(description="Seconds per stage.")
    inputs: dict[str, Any] | None
    settings: dict[str, Any] | None
    result: ResultOut | None


class AuditOut(Schema):
    id: int
    at: datetime
    event: str
    actor: str | None
    message: str
    job_id: int | None
    delivery_id: int | None
    details: dict[str, Any] | None


class SlideOut(Schema):
    id: int
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str | None
    patient_id: str | None
    patient_name: str | None
    accession_number: str | None
    study_date: str | None
    container_identifier: str | None
    source_ae: str | None
    state: str
    state_reason: str | None
    first_received_at: datetime
    last_received_at: datetime
    settled_at: datetime | None


class AccessOut(Schema):
    """One access to the case's data (the access audit)."""

    at: datetime
    user: str | None
    view: str = Field(description="The kind of view, e.g. case.page or dicomweb.frames.")
    what: str
    source: str | None = Field(description="The client's address, as the server saw it.")


class CaseDetail(Schema):
    slide: SlideOut
    case_state: str
    instances: list[InstanceOut]
    jobs: list[JobOut]
    model: ModelCardOut | None = Field(description="The model that ran for the latest result.")
    result: ResultOut | None = Field(
        description="The latest result: its SEG series and every object it holds, by kind."
    )
    deliveries: list[DeliveryOut]
    audit: list[AuditOut] = Field(description="Audit events of the case, accesses aside.")
    access: list[AccessOut] = Field(
        default_factory=list, description="Who looked at the case's data, newest first."
    )


class ActionOut(Schema):
    ok: Literal[True] = True
    message: str
    job_id: int | None = None
    delivery_id: int | None = None
    dispatched: bool = Field(description="Handed to the worker now (else reconcile picks it up).")


class CheckOut(Schema):
    ok: bool
    detail: str
    seconds: float


class ReadyOut(Schema):
    ready: bool
    checks: dict[str, CheckOut]


class ErrorOut(BaseModel):
    detail: str
