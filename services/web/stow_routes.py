"""STOW-RS in: POST /dicomweb/studies[/{study}] for scanners and archives that push by
DICOMweb. The HTTP face of unitumour_dicom.dicomweb.stow, which does the work.

Machine clients do not log in: a sender token (``unitumour tokens``) in the Authorization
header names the sender, and the listener's caller rule for that AE title decides, as for a
C-STORE, whether it may send from this address, its quiet time and its destinations. A
browser session cookie is not accepted here (no cross-site request can store instances).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse

from unitumour_dicom.db import record_event
from unitumour_dicom.dicomweb.stow import StowRequest, StowResult, UnsupportedMediaError
from unitumour_dicom.dicomweb.stow_response import negotiate_response, render
from unitumour_dicom.ingest.events import IngestEvent
from unitumour_dicom.ingest.guard import AuditThrottle
from unitumour_dicom.ingest.policy import AdmissionDecision, AdmissionPolicy
from unitumour_dicom.ingest.receive import Receiver
from unitumour_dicom.sender_tokens import CredentialError, authenticate, presented_secret

from .deps import Ctx, WebContext
from .dicomweb_routes import UIDPath, _base

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

#: Body bytes gathered before a hop to the worker thread that parses and writes them.
_BATCH = 1 << 20


class StowGate:
    """What every STOW-RS request of one app shares: the receive path (its admitter
    serialises admissions of one SOP Instance UID), the bound on concurrent requests and
    the throttle on audit rows of refused credentials."""

    def __init__(self, ctx: WebContext) -> None:
        self.receiver = Receiver(ctx.runtime)
        self.policy = AdmissionPolicy(ctx.settings.listener)
        self.slots = threading.BoundedSemaphore(ctx.settings.web.stow_max_requests)
        self.throttle = AuditThrottle()


_gate_lock = threading.Lock()


def _gate(request: Request, ctx: WebContext) -> StowGate:
    with _gate_lock:
        gate = getattr(request.app.state, "stow_gate", None)
        if gate is None:
            gate = request.app.state.stow_gate = StowGate(ctx)
        return gate


def _refuse(
    request: Request, ctx: WebContext, gate: StowGate, code: int, why: str, sender: str | None
) -> Response:
    client = request.client.host if request.client else "?"
    suppressed = gate.throttle.admit(client, f"stow-{code}")
    if suppressed is not None:
        with ctx.runtime.session() as db:
            record_event(
                session=db,
                event=IngestEvent.STOW_REFUSED,
                message=f"STOW-RS from {client} refused ({code}): {why}",
                actor=sender,
                details={"peer": client, "status": code, "suppressed_before": suppressed},
            )
    headers = {"WWW-Authenticate": 'Bearer realm="unitumour-stow"'} if code == 401 else None
    return JSONResponse({"detail": why}, status_code=code, headers=headers)


def _authorise(
    request: Request, ctx: WebContext, gate: StowGate
) -> tuple[str, AdmissionDecision] | Response:
    """The sender and its caller rule, or the refusal (a worker thread: it reads the
    database)."""
    client = request.client.host if request.client else None
    try:
        secret, claimed = presented_secret(
            request.headers.get("authorization"), secure=request.url.scheme == "https"
        )
    except CredentialError as exc:
        return _refuse(request, ctx, gate, 401, str(exc), None)
    with ctx.runtime.session() as db:
        token = authenticate(session=db, secret=secret, client=client)
        sender = token.sender if token is not None else None
    if sender is None:
        return _refuse(request, ctx, gate, 401, "unknown, revoked or expired token", None)
    if claimed is not None and claimed != sender:
        return _refuse(request, ctx, gate, 401, "the user name is not the token's sender", sender)
    decision = gate.policy.decide(
        calling_ae=sender, called_ae=ctx.settings.listener.ae_title, peer_host=client or ""
    )
    if not decision.accepted:
        return _refuse(request, ctx, gate, 403, decision.reason, sender)
    return sender, decision


async def _store(
    request: Request, ctx: WebContext, study: str | None, accept: str | None
) -> Response:
    gate = _gate(request, ctx)
    allowed = await anyio.to_thread.run_sync(_authorise, request, ctx, gate)
    if isinstance(allowed, Response):
        return allowed
    sender, decision = allowed
    client = request.client.host if request.client else None
    if not gate.slots.acquire(blocking=False):
        return JSONResponse(
            {"detail": "too many STOW-RS requests at once; try again"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    try:
        try:
            stow = StowRequest(
                gate.receiver,
                content_type=request.headers.get("content-type", ""),
                sender=sender,
                peer=client,
                quiet_seconds=decision.quiet_seconds,
                study_instance_uid=study,
                base_url=_base(request, ctx),
            )
        except UnsupportedMediaError as exc:
            return await anyio.to_thread.run_sync(
                _refuse, request, ctx, gate, 415, str(exc), sender
            )
        result = await _feed(request, stow, ctx.settings.listener.network_timeout_s)
    finally:
        gate.slots.release()
    if result.status == 400:
        return JSONResponse({"detail": f"malformed request body: {result.error}"}, 400)
    media = negotiate_response(accept)
    response = Response(render(result.dataset, media), result.status, media_type=media)
    for value in result.warnings:
        response.headers.append("Warning", value)
    return response


async def _feed(request: Request, stow: StowRequest, read_timeout_s: float) -> StowResult:
    """Hand the body to ``stow`` in ~1 MiB batches, each in a worker thread (writes, fsyncs
    and commits must not stall the event loop); a client that sends nothing for
    ``read_timeout_s`` is cut off, and what it had completed stays stored."""
    stream = request.stream().__aiter__()
    batch = bytearray()
    malformed: str | None = None
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), read_timeout_s)
            except StopAsyncIteration:
                break
            batch += chunk
            if len(batch) >= _BATCH:
                data, batch = bytes(batch), bytearray()
                await anyio.to_thread.run_sync(stow.feed, data)
    except TimeoutError:
        malformed = f"no body data for {read_timeout_s:.0f} s"
    except ValueError as exc:  # MultipartError: the body is not what it says
        malformed = str(exc)
    except Exception as exc:  # the client went away (ClientDisconnect) or the server stops
        malformed = f"the request body ended early ({type(exc).__name__})"
    if batch:  # what did arrive is read, so that every part it completes is kept
        try:
            await anyio.to_thread.run_sync(stow.feed, bytes(batch))
        except ValueError as exc:
            malformed = malformed or str(exc)
    return await anyio.to_thread.run_sync(lambda: stow.finish(malformed=malformed))


_RESPONSES = {
    "summary": 'STOW-RS: store instances (multipart/related; type="application/dicom")',
    "responses": {
        200: {"description": "Every instance stored."},
        202: {"description": "Some stored; failures or warnings for others."},
        400: {"description": "The body is not a well-formed multipart/related message."},
        401: {"description": "No, an unknown, revoked or expired sender token."},
        403: {"description": "The token's sender may not send from this address."},
        409: {"description": "No instance could be stored (see FailedSOPSequence)."},
        415: {"description": 'Not multipart/related; type="application/dicom".'},
        503: {"description": "Too many STOW-RS requests at once."},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {'multipart/related; type="application/dicom"': {}},
        }
    },
}


@router.post("/studies", operation_id="stow_rs_store", **_RESPONSES)  # type: ignore[arg-type]
async def store_instances(
    request: Request, ctx: Ctx, accept: Annotated[str | None, Header()] = None
) -> Response:
    return await _store(request, ctx, None, accept)


@router.post("/studies/{study}", operation_id="stow_rs_store_in_study", **_RESPONSES)  # type: ignore[arg-type]
async def store_study_instances(
    request: Request, study: UIDPath, ctx: Ctx, accept: Annotated[str | None, Header()] = None
) -> Response:
    return await _store(request, ctx, study, accept)
