"""Settings sections, one class per concern, so each service reads only what it owns.

Every section is frozen: a process gets its settings once, at start, and a change means a
restart (or a scoped copy with ``model_copy(update=...)`` in tests), never a mutated global.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_ae_title(value: str) -> str:
    """AE titles are at most 16 characters of the Default Character Repertoire, no backslash."""
    stripped = value.strip()
    if not stripped or len(stripped) > 16:
        raise ValueError(f"AE title {value!r} must have 1 to 16 characters")
    if any(ord(c) < 0x20 or ord(c) > 0x7E or c == "\\" for c in stripped):
        raise ValueError(f"AE title {value!r} may hold only printable ASCII without backslash")
    return stripped


class DatabaseSettings(Section):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: SQLite file unitumour.db in the data directory.",
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")
    pool_size: int = Field(
        default=5, ge=1, description="Connections kept per process (PostgreSQL)."
    )


class StoreSettings(Section):
    root: Path | None = Field(default=None, description="Default: store/ in the data directory.")
    min_free_percent: float = Field(
        default=5.0,
        ge=0,
        lt=100,
        description="Refuse new instances (status 0xA700) when free disk falls below this.",
    )


class BrokerSettings(Section):
    url: str | None = Field(
        default=None,
        description=(
            "Celery broker URL: redis://..., amqp://..., or the embedded durable default "
            "sqla+sqlite:///DATA_DIR/broker.sqlite when unset."
        ),
    )
    visibility_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "Redis and the embedded broker: a message taken by a worker that died without "
            "acknowledging it is delivered again after this long (RabbitMQ does so as soon as "
            "the worker's connection drops). Job leases recover the job sooner; this only "
            "bounds how long a lost message lingers."
        ),
    )
    polling_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Embedded broker: how often an idle worker looks for new messages.",
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout of one attempt to reach the broker."
    )


class TLSSettings(Section):
    enabled: bool = Field(default=False, description="Speak DICOM over TLS (PS3.15 B.9).")
    certfile: Path | None = Field(default=None, description="Our certificate chain (PEM).")
    keyfile: Path | None = Field(default=None, description="The private key of certfile (PEM).")
    ca_file: Path | None = Field(
        default=None, description="CA bundle that client certificates must chain to."
    )
    require_client_cert: bool = Field(
        default=False, description="Mutual TLS: refuse peers without a certificate from ca_file."
    )


class CallerRule(Section):
    """One sender allowed to associate, and what applies to what it sends."""

    ae_title: str
    networks: list[str] = Field(
        default_factory=list, description="Source addresses or CIDR networks; empty: any."
    )
    quiet_seconds: float | None = Field(default=None, gt=0)
    destinations: list[str] = Field(
        default_factory=list, description="Destination names that receive results for it."
    )

    _ae = field_validator("ae_title")(_check_ae_title)

    @field_validator("networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


class ListenerSettings(Section):
    ae_title: str = Field(
        default="UNITUMOUR", description="Our AE title (the called AE senders use)."
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0: all).")
    port: int = Field(default=11112, ge=0, le=65535, description="DICOM port (0: any free port).")
    accept_any_caller: bool = Field(
        default=False,
        description="Accept every calling AE title (embedded demo only; production lists callers).",
    )
    callers: list[CallerRule] = Field(
        default_factory=list, description="Senders allowed to associate, with their overrides."
    )
    extra_sop_classes: list[str] = Field(
        default_factory=list,
        description="Storage SOP Class UIDs accepted besides VL Whole Slide Microscopy Image.",
    )
    quiet_seconds: float = Field(
        default=30.0, gt=0, description="A series settles this long after its last instance."
    )
    max_associations: int = Field(
        default=16,
        ge=1,
        description="Concurrent associations (connections whose association request arrived).",
    )
    max_pending_connections: int = Field(
        default=128,
        ge=1,
        description=(
            "Connections waiting to send their association request; beyond it the one waiting "
            "longest is dropped, so idle connections never lock senders out."
        ),
    )
    max_connections_per_host: int = Field(
        default=8, ge=1, description="Concurrent connections from one IP address."
    )
    max_pdu_bytes: int = Field(
        default=131072,
        ge=4096,
        le=64 * 1024 * 1024,
        description=(
            "Largest P-DATA PDU we receive (announced to peers; longer ones abort the "
            "association); 128 KiB was fastest."
        ),
    )
    max_association_request_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        le=16 * 1024 * 1024,
        description="Largest A-ASSOCIATE-RQ PDU we read; longer ones are aborted unread.",
    )
    max_instance_bytes: int = Field(
        default=8 * 1024**3, ge=1, description="Larger instances are refused (status 0xA700)."
    )
    max_total_pixels: int = Field(
        default=200_000 * 200_000, ge=1, description="Refuse levels larger than this."
    )
    network_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Once associated: a silent peer, a PDU not whole, or a send not taken is dropped "
            "after this long."
        ),
    )
    tls: TLSSettings = Field(default_factory=TLSSettings)
    max_frames: int = Field(
        default=2_000_000, ge=1, description="Refuse instances with more frames than this."
    )
    max_frame_pixels: int = Field(
        default=8192 * 8192,
        ge=1,
        description="Refuse frames (tiles) of more pixels than this (Rows x Columns).",
    )
    max_frame_dimension: int = Field(
        default=16384, ge=1, description="Refuse frames wider or taller than this (Rows, Columns)."
    )
    max_matrix_dimension: int = Field(
        default=1_000_000,
        ge=1,
        description="Refuse a total pixel matrix wider or taller than this (10 cm at 0.1 um/px).",
    )
    max_optical_paths: int = Field(
        default=64, ge=1, description="Refuse instances with more optical paths than this."
    )
    max_focal_planes: int = Field(
        default=256, ge=1, description="Refuse instances with more focal planes than this."
    )
    acse_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Before an association: the TLS handshake and the whole association request must "
            "arrive within this; also the wait for a release."
        ),
    )
    settle_interval_s: float = Field(
        default=1.0, gt=0, description="How often the listener looks for slides to settle."
    )
    shutdown_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="On shutdown, let associations in flight finish for this long, then abort.",
    )

    _ae = field_validator("ae_title")(_check_ae_title)


class ModelSettings(Section):
    path: Path | None = Field(
        default=None,
        description="Checkpoint (.safetensors with its .card.json beside it). Default: demo.",
    )
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    batch_size: int = Field(default=16, ge=1, description="Tiles per forward pass.")
    mixed_precision: bool = Field(
        default=True, description="bf16/fp16 autocast and channels_last on CUDA (no effect on CPU)."
    )
    read_threads: int = Field(default=2, ge=1, description="Threads decoding slide frames.")


class SegSettings(Section):
    segmentation_type: Literal["BINARY", "FRACTIONAL"] = Field(
        default="BINARY", description="BINARY mask, or FRACTIONAL probabilities (0..255)."
    )
    compression: Literal[
        "none", "rle", "jpeg2000lossless", "jpegls-lossless", "explicit-vr-deflated"
    ] = Field(
        default="none",
        description=(
            "Transfer syntax of the SEG: none (Explicit VR Little Endian, read by every viewer), "
            "explicit-vr-deflated, jpeg2000lossless; rle and jpegls-lossless for FRACTIONAL only."
        ),
    )
    fractional_type: Literal["PROBABILITY", "OCCUPANCY"] = Field(
        default="PROBABILITY", description="Segmentation Fractional Type of FRACTIONAL SEGs."
    )
    manufacturer: str = Field(
        default="UniTumour DICOM", description="SEG Manufacturer (0008,0070)."
    )
    manufacturer_model_name: str = Field(
        default="UniTumour DICOM SEG writer", description="SEG Manufacturer's Model Name."
    )
    device_serial_number: str | None = Field(
        default=None, description="Default: this host's name (the installation that made it)."
    )
    series_number: int = Field(
        default=900, ge=0, le=2**31 - 1, description="Series Number of the SEG series."
    )
    series_description: str = Field(
        default="Tumour segmentation, {model_name} {model_version} (AI)",
        description="{model_name} and {model_version} are filled in; cut to 64 characters.",
    )
    content_creator_name: str = Field(
        default="UniTumour^AI", description="SEG Content Creator's Name (a DICOM PN)."
    )
    segment_label: str = Field(
        default="Tumour", min_length=1, max_length=64, description="Segment Label shown by viewers."
    )
    institution_name: str | None = Field(
        default=None, description="Institution Name written into each SEG, if set."
    )

    @model_validator(mode="after")
    def _compression_carries_type(self) -> SegSettings:
        if self.segmentation_type == "BINARY" and self.compression in ("rle", "jpegls-lossless"):
            raise ValueError(
                f"compression {self.compression!r} cannot carry BINARY (1-bit) pixels; use "
                "none, explicit-vr-deflated or jpeg2000lossless, or segmentation_type FRACTIONAL"
            )
        return self


#: The kinds of result object (the values of ``db.ResultKind``; a test holds them equal).
ResultKindName = Literal["seg", "sr", "ann", "key_image"]
ALL_RESULT_KINDS: tuple[ResultKindName, ...] = ("seg", "sr", "ann", "key_image")


def _unique_kinds(kinds: list[ResultKindName]) -> list[ResultKindName]:
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds {kinds} names a kind twice")
    return kinds


class ResultsSettings(Section):
    kinds: list[ResultKindName] = Field(
        default=list(ALL_RESULT_KINDS),
        description=(
            "Result objects each job writes: seg (always), sr (TID 1500 measurements), ann "
            "(bulk annotations of the tumour contours), key_image (Secondary Capture)."
        ),
    )
    key_image_max_side: int = Field(
        default=1024, ge=64, le=4096, description="Longest side of the key image's thumbnail."
    )

    _kinds = field_validator("kinds")(_unique_kinds)

    @field_validator("kinds")
    @classmethod
    def _seg_always(cls, kinds: list[ResultKindName]) -> list[ResultKindName]:
        if "seg" not in kinds:
            raise ValueError("results.kinds must hold seg: every other object refers to the SEG")
        return kinds


class DestinationSettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    kinds: list[ResultKindName] = Field(
        default=list(ALL_RESULT_KINDS),
        min_length=1,
        description="Kinds of result object sent there (of those written); default: all.",
    )

    _ae = field_validator("ae_title")(_check_ae_title)
    _kinds = field_validator("kinds")(_unique_kinds)


class DeliverySettings(Section):
    destinations: list[DestinationSettings] = Field(
        default_factory=list, description="Where results can be sent (see routing)."
    )
    always_to: list[str] = Field(
        default_factory=list, description="Destination names every result goes to (archives)."
    )
    calling_ae_title: str = Field(
        default="UNITUMOUR", description="Our AE title when we send results."
    )
    initial_delay_s: float = Field(
        default=10.0, gt=0, description="Wait before the first retry; doubles each try."
    )
    max_delay_s: float = Field(default=900.0, gt=0, description="Longest wait between tries.")
    max_age_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Give up (state failed) this long after the first try.",
    )
    jitter: float = Field(
        default=0.2, ge=0, le=1, description="Random spread of each wait, as a fraction of it."
    )
    timeout_s: float = Field(
        default=60.0, gt=0, description="Network timeout of one association with a destination."
    )

    _ae = field_validator("calling_ae_title")(_check_ae_title)


class WorkerSettings(Section):
    lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A running job's lease; its worker renews it every heartbeat. A job whose lease "
            "ran out (its worker died) is taken back by the reconcile."
        ),
    )
    heartbeat_seconds: float = Field(
        default=30.0, gt=0, description="How often a running job renews its lease."
    )
    reconcile_seconds: float = Field(
        default=60.0, gt=0, description="How often each worker runs the reconcile."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts of one job before it ends failed."
    )
    retry_delay_s: float = Field(
        default=30.0, ge=0, description="Wait before a failed attempt's job runs again."
    )
    redispatch_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A queued job or due delivery whose message was sent this long ago, while its "
            "queue is empty (the message was lost), is sent again."
        ),
    )
    verify_inputs: bool = Field(
        default=True,
        description=(
            "Check each input instance against its recorded sha256 before the job reads it "
            "(one extra read of the slide), so the digests in the provenance are proven."
        ),
    )
    segmentation_processes: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Segmentation worker processes on this host; default one per visible GPU "
            "(CUDA_VISIBLE_DEVICES set for each), or one on a host without a GPU."
        ),
    )
    scratch_dir: Path | None = Field(
        default=None,
        description=(
            "Where each job keeps its masks at the model's resolution while it runs (up to 3 "
            "bytes a pixel: about 4.6 GB for a 25 x 50 mm resection at 0.9 µm/px, far less "
            "for a slide of mostly glass), in a folder of its own removed when the job ends. "
            "Default: spool/ in the store. Set a local disk when the store is on a network "
            "file system."
        ),
    )
    delivery_concurrency: int = Field(
        default=4, ge=1, description="Deliveries sent at once by one host's delivery worker."
    )
    shutdown_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "On SIGTERM a worker finishes its running job; after this long it stops anyway and "
            "the job goes back to the queue."
        ),
    )


class WebSettings(Section):
    host: str = Field(default="127.0.0.1", description="Address the web app listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port of the web app.")
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs session cookies. Default: a random key kept in the data directory.",
    )
    secure_cookies: bool = Field(
        default=True,
        description=(
            "Mark the session cookie Secure (browsers send it over HTTPS only). Turn off only "
            "to serve plain http on localhost, as the embedded demo does."
        ),
    )
    session_hours: float = Field(
        default=8.0,
        gt=0,
        description=(
            "A log-in lasts this long (a server-side session; log-out, admins, password and "
            "role changes end it sooner)."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description=(
            "Addresses or networks of the reverse proxies whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed (the client address on record; https for HSTS). "
            "Empty: believe no proxy."
        ),
    )
    hsts_seconds: int = Field(
        default=31_536_000,
        ge=0,
        description=(
            "max-age of the Strict-Transport-Security header sent on requests that came over "
            "HTTPS (directly, or from a trusted proxy). 0: no header."
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    public_url: str | None = Field(
        default=None,
        description=(
            "External base URL (https://host/prefix) written into DICOMweb links; "
            "default: root-relative links (never the request's Host header)."
        ),
    )
    dicomweb_max_frames_mb: float = Field(
        default=64.0,
        gt=0,
        description=(
            "Most MiB of frames (as sent: stored or decoded) one WADO-RS frames request may "
            "ask for; more is refused with 413 (ask for fewer frames at a time). A viewer "
            "asks for one tile at a time."
        ),
    )
    stow_max_requests: int = Field(
        default=4,
        ge=1,
        le=256,
        description=(
            "STOW-RS requests (POST /dicomweb/studies) handled at once per web process; "
            "more are answered 503 with Retry-After. Each holds a thread while it writes."
        ),
    )
    access_audit_window_s: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Access audit: DICOMweb frame and bulk data requests of one instance by one user "
            "within this many seconds are one audit row (per web process); 0 records each."
        ),
    )
    viewer_dir: Path | None = Field(
        default=None,
        description=(
            "Folder holding dicom-microscopy-viewer (from 'unitumour web fetch-viewer'). "
            "Default: viewer/ in the data directory, else var/viewer of a source checkout "
            "('make viewer')."
        ),
    )
    max_failed_logins: int = Field(
        default=5, ge=1, description="Failed log-ins for one user name before a lock-out."
    )
    lockout_minutes: float = Field(
        default=15.0, gt=0, description="How long those failures count, and the lock-out lasts."
    )
    thumbnail_pixels: int = Field(
        default=1024, ge=64, le=4096, description="Longest side of the overlay picture."
    )
    readiness_timeout_s: float = Field(
        default=3.0, gt=0, description="Time each /readyz check (database, broker) may take."
    )
    service_metrics: bool = Field(
        default=True,
        description=(
            "Export the service metrics (read from the database: jobs, deliveries, "
            "associations...) on /metrics. They are the whole service's, the same on every "
            "replica, so a sum over replicas multiplies them: with several web replicas, "
            "export them from one process only (deploy/kubernetes: unitumour-metrics)."
        ),
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level when no -v/-d/-q is given."
    )
    json_format: bool = Field(
        default=False,
        description="One JSON object a line (time, level, logger, process, association, message).",
    )


class RetentionSettings(Section):
    """Retention of received slides: ``unitumour retention purge`` removes their instance files
    once processed and delivered, and keeps results (SEGs) and every provenance row."""

    purge_after_days: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Default age, in days since a slide's last instance arrived, after which "
            "`unitumour retention purge` removes its received files. Unset: nothing is "
            "purged unless --older-than is given."
        ),
    )


#: Vendor formats the watched folder takes by default (by how the file name ends): those
#: wsidicomizer reads from one file. MIRAX (.mrxs) is a file and a folder, so it is left out.
DEFAULT_WATCH_SUFFIXES = [".svs", ".ndpi", ".tif", ".tiff", ".scn", ".bif", ".vms", ".svslide"]


class WatchSettings(Section):
    """The watched folder: scanners that write vendor files drop them there; each is converted
    to DICOM VL WSI (wsidicomizer, in its own environment) and admitted like a C-STORE."""

    folder: Path | None = Field(
        default=None,
        description=(
            "Folder where scanners drop vendor files (SVS, NDPI, Philips TIFF, OME-TIFF...). "
            "Unset: no watched folder. Originals move to done/ or failed/ inside it."
        ),
    )
    quiet_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A file is taken once its size and mtime stay unchanged this long.",
    )
    scan_interval_s: float = Field(
        default=2.0, gt=0, description="How often the folder is looked at."
    )
    suffixes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_WATCH_SUFFIXES),
        description="File-name endings that are taken (case-insensitive); others are left.",
    )
    filename_pattern: str | None = Field(
        default=None,
        description=(
            "Regular expression matched against the file name without its extension when no "
            "sidecar is beside it; named groups are DICOM keywords, e.g. "
            "'(?P<AccessionNumber>[A-Z0-9]+)_(?P<ContainerIdentifier>.+)'."
        ),
    )
    converter_python: Path | None = Field(
        default=None,
        description=(
            "Python of the converter's environment (with wsidicomizer). Default: "
            ".venv-convert/bin/python beside the repository ('make venv-convert')."
        ),
    )
    timeout_s: float = Field(
        default=3600.0, gt=0, description="Longest one conversion may run before it is stopped."
    )
    max_output_bytes: int = Field(
        default=65536, ge=1024, description="Converter output kept (the tail) for the reason."
    )
    tile_size: int = Field(
        default=512,
        ge=64,
        le=4096,
        description="Tile size where tiles are re-encoded (NDPI, OpenSlide formats).",
    )
    workers: int = Field(default=2, ge=1, le=32, description="Converter threads per file.")
    source_name: str = Field(
        default="WATCHFOLDER",
        description=(
            "Recorded as the slides' source (as a calling AE title is): a listener.callers "
            "entry with this ae_title routes their results to its destinations."
        ),
    )

    _name = field_validator("source_name")(_check_ae_title)

    @field_validator("suffixes")
    @classmethod
    def _check_suffixes(cls, value: list[str]) -> list[str]:
        out = [s.lower() if s.startswith(".") else f".{s.lower()}" for s in value]
        if not out:
            raise ValueError("give at least one suffix")
        return out

    @field_validator("filename_pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            from ..convert.identity import IdentityError, check_pattern

            try:
                check_pattern(value)
            except IdentityError as exc:
                raise ValueError(str(exc)) from exc
        return value


class PullSourceSettings(Section):
    """One PACS we query for new slide series and retrieve them from (pull intake).

    ``kind`` dicomweb: QIDO-RS to find series, WADO-RS to retrieve them (``url`` and the
    ``auth`` fields). ``kind`` dimse: C-FIND to find, then C-GET (the instances come back on
    the same association) or C-MOVE (the PACS sends them to our listener, whose AE title it
    must know as a move destination); ``ae_title``, ``host`` and ``port`` name the PACS.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Unique name of the source.")
    kind: Literal["dicomweb", "dimse"] = Field(
        description="dicomweb (QIDO-RS + WADO-RS) or dimse (C-FIND + C-GET or C-MOVE)."
    )
    enabled: bool = Field(default=True, description="Polled by the loop and by 'pull run'.")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="dicomweb: the service's base URL (…/dicom-web), QIDO and WADO under it.",
    )
    auth: Literal["none", "basic", "bearer"] = Field(
        default="none", description="dicomweb: HTTP authentication."
    )
    username: str | None = Field(default=None, description="dicomweb: Basic user name.")
    password: SecretStr | None = Field(default=None, description="dicomweb: Basic password.")
    token: SecretStr | None = Field(default=None, description="dicomweb: Bearer token.")
    verify_tls: bool = Field(
        default=True, description="dicomweb: check the server's certificate (https)."
    )
    ca_file: Path | None = Field(
        default=None, description="dicomweb: CA bundle for the server's certificate."
    )
    ae_title: str | None = Field(default=None, description="dimse: the PACS's AE title.")
    host: str | None = Field(default=None, description="dimse: the PACS's host.")
    port: int | None = Field(default=None, ge=1, le=65535, description="dimse: its port.")
    retrieve: Literal["c-get", "c-move"] = Field(
        default="c-get",
        description=(
            "dimse: C-GET (instances return on our association) or C-MOVE (the PACS stores "
            "them to move_destination, our running listener, which admits them)."
        ),
    )
    calling_ae_title: str | None = Field(
        default=None, description="dimse: our AE title towards the PACS. Default: listener's."
    )
    move_destination: str | None = Field(
        default=None, description="dimse C-MOVE: destination AE title. Default: listener's."
    )
    study_description: str | None = Field(
        default=None,
        max_length=64,
        description="Only series whose Study Description matches (DICOM wildcards * and ?).",
    )
    station_name: str | None = Field(
        default=None, max_length=16, description="Only series from this Station Name (wildcards)."
    )
    date_from: str | None = Field(
        default=None,
        pattern=r"^\d{8}$",
        description="Only studies on or after this Study Date (YYYYMMDD).",
    )
    date_to: str | None = Field(
        default=None,
        pattern=r"^\d{8}$",
        description="Only studies on or before this Study Date (YYYYMMDD).",
    )
    quiet_seconds: float | None = Field(
        default=None, gt=0, description="Quiet time of its slides; default: the listener's."
    )

    @field_validator("ae_title", "calling_ae_title", "move_destination")
    @classmethod
    def _check_aes(cls, value: str | None) -> str | None:
        return None if value is None else _check_ae_title(value)

    @model_validator(mode="after")
    def _kind_has_its_fields(self) -> PullSourceSettings:
        if self.kind == "dicomweb":
            if not self.url:
                raise ValueError(f"pull source {self.name}: kind dicomweb needs url")
            if self.auth == "basic" and (self.username is None or self.password is None):
                raise ValueError(f"pull source {self.name}: auth basic needs username, password")
            if self.auth == "bearer" and self.token is None:
                raise ValueError(f"pull source {self.name}: auth bearer needs token")
        elif not (self.ae_title and self.host and self.port):
            raise ValueError(f"pull source {self.name}: kind dimse needs ae_title, host, port")
        return self

    @property
    def remote(self) -> str:
        """Where the source is, for the audit: the URL, or AE@host:port."""
        if self.kind == "dicomweb":
            scheme, _, rest = str(self.url).partition("://")
            host, slash, path = rest.partition("/")
            return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"  # never a password
        return f"{self.ae_title}@{self.host}:{self.port}"


class PullSettings(Section):
    """Query/retrieve from PACSs that cannot push: the listener's pull loop and 'unitumour pull
    run' ask each source for new slide series (Modality SM) and admit what they retrieve."""

    sources: list[PullSourceSettings] = Field(
        default_factory=list, description="The PACSs to pull from."
    )
    interval_s: float = Field(
        default=300.0, gt=0, description="The listener polls every source this often."
    )
    overlap_s: float = Field(
        default=2 * 86400.0,
        ge=0,
        description=(
            "Each query reaches back this far before the watermark (the start of the last "
            "complete poll): DICOM dates are coarse, PACS clocks differ and a slide is often "
            "stored days after its study began; series already received are skipped."
        ),
    )
    initial_lookback_s: float = Field(
        default=7 * 86400.0,
        ge=0,
        description="A source's first poll (no watermark yet) reaches back this far.",
    )
    max_results: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most series one query may return; more are refused, not read (narrow it).",
    )
    max_series_per_poll: int = Field(
        default=50, ge=1, description="New series retrieved per source and poll; the rest next."
    )
    max_response_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest QIDO-RS (search) response read.",
    )
    timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Deadline of each network read (HTTP or DIMSE) while querying or retrieving.",
    )
    retrieve_timeout_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        description=(
            "Longest retrieval of one series (a peer that sends slowly but never stops cannot "
            "hold the poll); it counts as failed and is tried again next poll."
        ),
    )
    move_wait_s: float = Field(
        default=600.0,
        gt=0,
        description="C-MOVE: how long to wait for the moved instances to reach the listener.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description=(
            "Retrievals of one series before it is given up (audited); until then a failed "
            "series holds its source's watermark back, so the next poll tries it again."
        ),
    )
