"""Read-only DICOMweb (QIDO-RS and WADO-RS, PS3.18) over the store and the database.

Framework-free: each call takes a database session, the client's Accept header and the
path's UIDs, and returns a :class:`WebResponse` that any HTTP layer can send. The web app
puts it behind its login; tests call it directly.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ..store import FileStore
from . import catalog, media
from .errors import (
    BadQueryError,
    FrameNotFoundError,
    NotAcceptableError,
    ResponseTooLargeError,
)
from .metadata import (
    JsonCache,
    dataset_to_json,
    find_bulkdata,
    parse_bulk_path,
    read_header,
)
from .multipart import Part, content_type, iter_multipart, new_boundary, part_content_type
from .pixels import LayoutCache, PixelDataLayout, decode_frame, read_frame

log = logging.getLogger(__name__)

MAX_FRAMES_PER_REQUEST = 256
#: Default of ``DicomWeb.max_frames_bytes`` (web.dicomweb_max_frames_mb).
DEFAULT_MAX_FRAMES_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Seen:
    """What a response shows of the archive, for the access audit: the cases (slides),
    patients, studies, series and instances in it."""

    slide_ids: tuple[int, ...] = ()
    patient_ids: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()

    @classmethod
    def of_instances(cls, records: Sequence[catalog.InstanceRecord]) -> Seen:
        return cls(
            slide_ids=_unique(r.slide_id for r in records),
            patient_ids=_unique(r.patient_id for r in records),
            study_uids=_unique(r.study_instance_uid for r in records),
            series_uids=_unique(r.series_instance_uid for r in records),
            sop_uids=_unique(r.sop_instance_uid for r in records),
        )


def _unique(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(v for v in values if v is not None and v != ""))


@dataclass
class WebResponse:
    """What to send: status, Content-Type, body (bytes or a stream of chunks), headers,
    and what it shows (for the access audit)."""

    status: int
    content_type: str
    body: bytes | Iterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    seen: Seen = field(default_factory=Seen)

    def read(self) -> bytes:
        """The whole body (tests and small responses)."""
        if isinstance(self.body, bytes):
            return self.body
        return b"".join(self.body)


def _pn(value: str | None) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": value}]} if value else {"vr": "PN"}


def _attr(vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": vr}
    return {"vr": vr, "Value": list(value) if isinstance(value, list | tuple) else [value]}


def _json_response(
    items: list[dict[str, Any]], mime: str, warnings: Sequence[str] = ()
) -> WebResponse:
    headers = {}
    if warnings:
        shown = ", ".join(re.sub(r"[^\x20-\x7e]", "?", w).replace('"', "'") for w in warnings)
        headers["Warning"] = f'299 unitumour "not supported for matching, ignored: {shown}"'
    if not items:
        # PS3.18 8.3.4: a search that matches nothing answers 204 No Content... but an empty
        # array is what most clients (dicomweb-client included) handle best; we send 200 [].
        return WebResponse(200, mime, b"[]", headers)
    return WebResponse(200, mime, json.dumps(items, separators=(",", ":")).encode(), headers)


class DicomWeb:
    """The DICOMweb service over one store; ``base_url`` (per call) is where it is mounted,
    e.g. ``https://host/dicomweb``, and prefixes every URL it writes into responses."""

    def __init__(
        self, store: FileStore, *, max_frames_bytes: int = DEFAULT_MAX_FRAMES_BYTES
    ) -> None:
        self.store = store
        #: Most bytes one frames response may carry (413 beyond).
        self.max_frames_bytes = max_frames_bytes
        self.layouts = LayoutCache()
        self.json_cache = JsonCache()

    # -- URLs ---------------------------------------------------------------------------
    @staticmethod
    def _study_url(base: str, study: str) -> str:
        return f"{base}/studies/{study}"

    def _series_url(self, base: str, study: str, series: str) -> str:
        return f"{self._study_url(base, study)}/series/{series}"

    def _instance_url(self, base: str, r: catalog.InstanceRecord) -> str:
        return (
            f"{self._series_url(base, r.study_instance_uid, r.series_instance_uid)}"
            f"/instances/{r.sop_instance_uid}"
        )

    # -- QIDO-RS ------------------------------------------------------------------------
    def search_studies(
        self, session: Session, params: Sequence[tuple[str, str]], accept: str | None, base: str
    ) -> WebResponse:
        mime = media.negotiate_json(accept)
        query = catalog.parse_query(params)
        items = []
        studies = catalog.search_studies(session, query)
        for s in studies:
            items.append(
                {
                    "00080020": _attr("DA", s.study_date),
                    "00080050": _attr("SH", s.accession_number),
                    "00080061": _attr("CS", list(s.modalities)),
                    "00081190": _attr("UR", self._study_url(base, s.study_instance_uid)),
                    "00100010": _pn(s.patient_name),
                    "00100020": _attr("LO", s.patient_id),
                    "0020000D": _attr("UI", s.study_instance_uid),
                    "00201206": _attr("IS", s.number_of_series),
                    "00201208": _attr("IS", s.number_of_instances),
                }
            )
        response = _json_response(items, mime, query.unsupported)
        study_uids = _unique(s.study_instance_uid for s in studies)
        response.seen = Seen(
            slide_ids=tuple(catalog.slide_ids_of(session, study_uids=study_uids)),
            patient_ids=_unique(s.patient_id for s in studies),
            study_uids=study_uids,
        )
        return response

    def search_series(
        self,
        session: Session,
        params: Sequence[tuple[str, str]],
        accept: str | None,
        base: str,
        *,
        study_uid: str | None = None,
    ) -> WebResponse:
        mime = media.negotiate_json(accept)
        query = catalog.parse_query(params)
        if study_uid is not None:
            catalog.find_instances(session, study_uid=study_uid)  # 404 for an unknown study
        items = []
        found = catalog.search_series(session, query, study_uid=study_uid)
        for s in found:
            items.append(
                {
                    "00080020": _attr("DA", s.study_date),
                    "00080050": _attr("SH", s.accession_number),
                    "00080060": _attr("CS", s.modality),
                    "00081190": _attr(
                        "UR", self._series_url(base, s.study_instance_uid, s.series_instance_uid)
                    ),
                    "00100010": _pn(s.patient_name),
                    "00100020": _attr("LO", s.patient_id),
                    "0020000D": _attr("UI", s.study_instance_uid),
                    "0020000E": _attr("UI", s.series_instance_uid),
                    "00201209": _attr("IS", s.number_of_instances),
                }
            )
        response = _json_response(items, mime, query.unsupported)
        series_uids = _unique(s.series_instance_uid for s in found)
        response.seen = Seen(
            slide_ids=tuple(catalog.slide_ids_of(session, series_uids=series_uids)),
            patient_ids=_unique(s.patient_id for s in found),
            study_uids=_unique(s.study_instance_uid for s in found),
            series_uids=series_uids,
        )
        return response

    def search_instances(
        self,
        session: Session,
        params: Sequence[tuple[str, str]],
        accept: str | None,
        base: str,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
    ) -> WebResponse:
        mime = media.negotiate_json(accept)
        query = catalog.parse_query(params)
        if study_uid is not None:
            catalog.find_instances(session, study_uid=study_uid, series_uid=series_uid)
        items = []
        records = catalog.search_instances(
            session, query, study_uid=study_uid, series_uid=series_uid
        )
        for r in records:
            items.append(
                {
                    "00080016": _attr("UI", r.sop_class_uid),
                    "00080018": _attr("UI", r.sop_instance_uid),
                    "00080020": _attr("DA", r.study_date),
                    "00080050": _attr("SH", r.accession_number),
                    "00080060": _attr("CS", r.modality),
                    "00081190": _attr("UR", self._instance_url(base, r)),
                    "00100010": _pn(r.patient_name),
                    "00100020": _attr("LO", r.patient_id),
                    "0020000D": _attr("UI", r.study_instance_uid),
                    "0020000E": _attr("UI", r.series_instance_uid),
                    "00280008": _attr("IS", r.number_of_frames),
                    "00480006": _attr("UL", r.total_pixel_matrix_columns),
                    "00480007": _attr("UL", r.total_pixel_matrix_rows),
                }
            )
        response = _json_response(items, mime, query.unsupported)
        response.seen = Seen.of_instances(records)
        return response

    # -- WADO-RS metadata ---------------------------------------------------------------
    def instance_json(self, record: catalog.InstanceRecord, base: str) -> dict[str, Any]:
        path = self.store.abspath(record.path)
        st = path.stat()
        instance_url = self._instance_url(base, record)
        key = (str(path), st.st_size, st.st_mtime_ns, instance_url)
        cached = self.json_cache.get(key)
        if cached is not None:
            return cached
        header = read_header(path)
        layout = self.layouts.get(path)
        value = dataset_to_json(
            header,
            bulkdata_uri=f"{instance_url}/bulkdata",
            layout=layout,
            available_transfer_syntax=layout.transfer_syntax_uid,
        )
        self.json_cache.put(key, value)
        return value

    def metadata(
        self,
        session: Session,
        accept: str | None,
        base: str,
        *,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> WebResponse:
        mime = media.negotiate_json(accept)
        records = catalog.find_instances(
            session, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
        )

        def stream() -> Iterator[bytes]:
            yield b"["
            for i, record in enumerate(records):
                if i:
                    yield b","
                yield json.dumps(self.instance_json(record, base), separators=(",", ":")).encode()
            yield b"]"

        seen = Seen.of_instances(records)
        if len(records) == 1:
            return WebResponse(200, mime, b"".join(stream()), seen=seen)
        return WebResponse(200, mime, stream(), seen=seen)

    # -- WADO-RS frames -----------------------------------------------------------------
    @staticmethod
    def parse_frame_list(text: str) -> list[int]:
        """PS3.18 10.4.1.1.4: one or more frame numbers, each at most once, in any order.
        A repeated number is refused: a frame list of 256 copies of one frame would
        otherwise cost 256 reads and 256 parts for one frame's worth of data."""
        numbers: list[int] = []
        seen: set[int] = set()
        for piece in text.split(","):
            piece = piece.strip()
            if not piece.isdigit() or len(piece) > 9 or int(piece) < 1:
                raise BadQueryError(f"frame number {piece[:20]!r} is not a positive integer")
            n = int(piece)
            if n in seen:
                raise BadQueryError(f"frame {n} is asked for more than once")
            seen.add(n)
            numbers.append(n)
            if len(numbers) > MAX_FRAMES_PER_REQUEST:
                raise BadQueryError(f"ask for 1 to {MAX_FRAMES_PER_REQUEST} frames at a time")
        return numbers

    @staticmethod
    def frame_size(layout: PixelDataLayout, number: int, decode: bool) -> int:
        """Bytes frame ``number`` takes in a response, known from the layout alone: the
        stored fragments, or the native (decoded) frame."""
        if layout.encapsulated and not decode and layout.fragments is not None:
            return sum(length for _offset, length in layout.fragments[number - 1])
        return layout.native_frame_length

    def frames(
        self,
        session: Session,
        accept: str | None,
        base: str,
        *,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        frame_list: str,
    ) -> WebResponse:
        """Frames of one instance, read from the store one at a time as the body is sent.

        Before anything is sent, the frame list is checked (unique numbers within
        1..NumberOfFrames, at most MAX_FRAMES_PER_REQUEST) and the response's size is
        reckoned from the file's layout against ``max_frames_bytes`` (413 beyond it). The
        first frame is read before the response starts, so that an unreadable file or a
        missing decoder is a proper error status rather than a cut-off body; the others
        are read while streaming, so memory holds one frame, whatever the list.
        """
        numbers = self.parse_frame_list(frame_list)
        (record,) = catalog.find_instances(
            session, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
        )
        path = self.store.abspath(record.path)
        layout = self.layouts.get(path)
        if layout.value_offset is None and not layout.needs_full_read:
            raise FrameNotFoundError("the instance has no Pixel Data")
        for n in numbers:
            if n > layout.number_of_frames:
                raise FrameNotFoundError(
                    f"frame {n} does not exist; the instance has {layout.number_of_frames}"
                )
        encoding = media.negotiate_frames(
            accept,
            stored_syntax=layout.transfer_syntax_uid,
            encapsulated=layout.encapsulated,
            n_frames=len(numbers),
        )
        total = sum(self.frame_size(layout, n, encoding.decode) for n in numbers)
        if total > self.max_frames_bytes:
            raise ResponseTooLargeError(
                f"the {len(numbers)} frames asked for come to {total} bytes, over the limit "
                f"of {self.max_frames_bytes} (web.dicomweb_max_frames_mb); ask for fewer "
                "frames at a time"
            )
        syntax = encoding.transfer_syntax_uid
        first = self._frame_bytes(path, layout, numbers[0], encoding.decode)
        seen = Seen.of_instances([record])
        if not encoding.multipart:
            return WebResponse(
                200, part_content_type(encoding.media_type, syntax), first, seen=seen
            )
        boundary = new_boundary()
        url = self._instance_url(base, record)
        part_type = part_content_type(encoding.media_type, syntax)
        decode = encoding.decode

        ready = [first]  # handed over, then dropped: the stream keeps no frame it has sent
        del first

        def parts() -> Iterator[Part]:
            for n in numbers:
                data = ready.pop() if ready else self._frame_bytes(path, layout, n, decode)
                yield Part(part_type, data=data, location=f"{url}/frames/{n}")
                del data

        return WebResponse(
            200,
            content_type(encoding.media_type, boundary, syntax),
            iter_multipart(parts(), boundary),
            seen=seen,
        )

    @staticmethod
    def _frame_bytes(path: Any, layout: PixelDataLayout, number: int, decode: bool) -> bytes:
        data = read_frame(path, layout, number)
        return decode_frame(data, layout) if decode else data

    # -- WADO-RS instances --------------------------------------------------------------
    def retrieve(
        self,
        session: Session,
        accept: str | None,
        base: str,
        *,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> WebResponse:
        """Whole instances as stored (bit for bit: what was received, or what we sent)."""
        multipart = media.negotiate_instance(accept, multipart_only=sop_uid is None)
        wanted_syntax = media.accepted_instance_syntax(accept)
        records = catalog.find_instances(
            session, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
        )
        files = []
        for record in records:
            path = self.store.abspath(record.path)
            syntax = self.layouts.get(path).transfer_syntax_uid
            if wanted_syntax is not None and wanted_syntax != syntax:
                raise NotAcceptableError(
                    f"instance is stored as {syntax}; we do not transcode whole instances "
                    "(ask for transfer-syntax=* or the stored syntax)"
                )
            files.append((record, path, syntax))
        seen = Seen.of_instances(records)
        if not multipart:
            record, path, syntax = files[0]
            return WebResponse(
                200,
                f"application/dicom; transfer-syntax={syntax}",
                _file_chunks(path),
                {"Content-Length": str(path.stat().st_size)},
                seen=seen,
            )
        boundary = new_boundary()
        parts = [
            Part(
                part_content_type("application/dicom", syntax),
                path=path,
                location=self._instance_url(base, record),
            )
            for record, path, syntax in files
        ]
        return WebResponse(
            200,
            content_type("application/dicom", boundary),
            iter_multipart(parts, boundary),
            seen=seen,
        )

    # -- WADO-RS bulk data --------------------------------------------------------------
    def bulkdata(
        self,
        session: Session,
        accept: str | None,
        base: str,
        *,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        tag_path: str,
    ) -> WebResponse:
        multipart = media.negotiate_bulkdata(accept)
        path_tags = parse_bulk_path(tag_path)
        (record,) = catalog.find_instances(
            session, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
        )
        path = self.store.abspath(record.path)
        seen = Seen.of_instances([record])
        if path_tags == (0x7FE00010,):
            layout = self.layouts.get(path)
            if layout.value_offset is None and not layout.needs_full_read:
                raise FrameNotFoundError("the instance has no Pixel Data")
            # Pixel Data as bulk data: its frames, as stored, one part each.
            media_type = media.FRAME_MEDIA_TYPES.get(
                layout.transfer_syntax_uid, "application/octet-stream"
            )
            boundary = new_boundary()
            frames = (
                Part(
                    part_content_type(media_type, layout.transfer_syntax_uid),
                    data=read_frame(path, layout, n),
                )
                for n in range(1, layout.number_of_frames + 1)
            )
            return WebResponse(
                200,
                content_type(media_type, boundary),
                iter_multipart(frames, boundary),
                seen=seen,
            )
        value = find_bulkdata(read_header(path), path_tags)
        if not multipart:
            return WebResponse(200, "application/octet-stream", value, seen=seen)
        boundary = new_boundary()
        body = b"".join(iter_multipart([Part("application/octet-stream", data=value)], boundary))
        return WebResponse(200, content_type("application/octet-stream", boundary), body, seen=seen)


def _file_chunks(path: Any, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            yield data


def iter_chunks(body: bytes | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(body, bytes):
        yield body
    else:
        yield from body
