"""Fuzzing the listener's front door: the PDU reader and the instance header parser.

Property: whatever arrives, the listener neither crashes nor allocates in proportion to what a
length field claims, and it says no cleanly (an A-ABORT, an A-ASSOCIATE-RJ, a close, or a
DICOM failure status), staying ready for the next sender.
"""

from __future__ import annotations

import socket
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitumour_dicom.errors import InvalidInstanceError
from unitumour_dicom.ingest import InstanceLimits, validate_instance
from unitumour_dicom.ingest.contexts import WSI_SOP_CLASS
from unitumour_dicom.ingest.header import read_instance_header
from unitumour_dicom.ingest.transport import decode_p_data
from unitumour_dicom.ingest.wire import (
    MAX_COMMAND_BYTES,
    MAX_OTHER_DATASET_BYTES,
    MessageBounds,
    PduLimits,
    ProtocolViolationError,
    command_field,
)

from .helpers import echo, wait_until
from .rawpeer import associate_rq, connect, pdu_header, resident_mib

LIMITS = PduLimits(max_pdu_bytes=16384, max_association_request_bytes=65536)

pdv_bodies = st.binary(max_size=600)
headers = st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1))


@settings(max_examples=400, deadline=None)
@given(header=headers, body=pdv_bodies)
def test_pdu_bounds_and_p_data_decoding_never_fail_but_cleanly(header, body):
    pdu_type, length = header
    try:
        LIMITS.check(pdu_type, length)
    except ProtocolViolationError as exc:
        assert exc.reason in (0x01, 0x06)
    else:
        assert length <= 65536
    pdu = decode_p_data(bytearray(body))
    if pdu is None:
        return
    bounds = MessageBounds()
    for item in pdu.presentation_data_value_items:
        try:
            bounds.feed(item.presentation_data_value)
        except ProtocolViolationError:
            return
        assert len(bounds._command) <= MAX_COMMAND_BYTES


@settings(max_examples=300, deadline=None)
@given(
    fragments=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 40_000)), min_size=1, max_size=80
    )
)
def test_message_bounds_hold_for_any_sequence_of_fragments(fragments):
    """However command and data set fragments interleave, no buffer passes its ceiling."""
    bounds = MessageBounds()
    dataset = 0
    for control, size in fragments:
        try:
            bounds.feed(bytes([control]) + bytes(size))
        except ProtocolViolationError:
            return
        assert len(bounds._command) <= MAX_COMMAND_BYTES
        dataset = 0 if control & 0x01 else dataset + size
        if control & 0x03 == 0x02:
            dataset = 0
        assert dataset <= MAX_OTHER_DATASET_BYTES  # no C-STORE command was ever completed


@given(st.binary(max_size=300))
def test_command_field_reads_any_bytes_without_failing(data):
    field = command_field(data)
    assert field is None or 0 <= field <= 0xFFFF


# -- the live listener --------------------------------------------------------------------


def _streams() -> st.SearchStrategy[bytes]:
    request = associate_rq()
    return st.one_of(
        st.binary(max_size=2048),
        st.builds(lambda n, tail: request[:n] + tail, st.integers(0, len(request)), st.binary()),
        st.builds(
            lambda t, n, tail: pdu_header(t, n) + tail,
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=512),
        ),
        st.builds(
            lambda tail: request + tail,
            st.binary(max_size=1024),
        ),
    )


@pytest.mark.integration
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=_streams())
def test_the_listener_refuses_any_byte_stream_cleanly(listening_fast, stream):
    listening = listening_fast
    sock = connect(listening.host, listening.port, timeout=5)
    try:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        answered = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answered += chunk
            assert len(answered) < 1 << 20
    except (ConnectionResetError, BrokenPipeError):
        answered = b""
    finally:
        sock.close()
    # whatever came back is whole PDUs of the kinds an acceptor sends
    offset = 0
    while offset < len(answered):
        pdu_type, _, length = struct.unpack_from(">BBL", answered, offset)
        assert pdu_type in (0x02, 0x03, 0x04, 0x06, 0x07), answered[offset : offset + 16]
        offset += 6 + length
    assert offset == len(answered)


@pytest.fixture(scope="module")
def listening_fast(tmp_path_factory):
    """One listener for every example (function-scoped fixtures would start one each)."""
    from unitumour_dicom.config import load_settings
    from unitumour_dicom.db import migrate
    from unitumour_dicom.ingest import ListenerService
    from unitumour_dicom.runtime import Runtime

    from .conftest import listener_settings
    from .helpers import Listening

    data = tmp_path_factory.mktemp("fuzz") / "data"
    data.mkdir()
    base = load_settings(data_dir=data)
    migrate.upgrade(base.database_url)
    runtime = Runtime(listener_settings(base, acse_timeout_s=1.0, network_timeout_s=1.0))
    service = ListenerService(runtime)
    host, port = service.start()
    before = resident_mib()
    yield Listening(service, runtime, host, port)
    wait_until(lambda: service.scp.guard.open_connections == 0, timeout=20)
    assert echo(host, port) == 0, "the listener no longer answers after the fuzzing"
    assert resident_mib() - before < 64
    service.stop(grace_s=2)


# -- the header parser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def instance_bytes(phantom) -> bytes:
    return Path(phantom.level_paths[-1][0]).read_bytes()


@pytest.mark.parametrize("seed", range(4))
def test_the_header_parser_refuses_mangled_instances_cleanly(instance_bytes, tmp_path, seed):
    """Mutations of a real instance (bytes flipped, lengths made huge, cut short) give a
    header or an InvalidInstanceError, never another exception or a large allocation."""
    import random

    rng = random.Random(seed)
    limits = InstanceLimits(
        max_instance_bytes=1 << 30,
        max_total_pixels=200_000 * 200_000,
        max_frames=2_000_000,
        max_frame_pixels=8192 * 8192,
    )
    path = tmp_path / "mangled.dcm"
    outcomes: dict[str, int] = {}
    tracemalloc.start()
    try:
        for _ in range(150):
            data = bytearray(instance_bytes)
            for _ in range(rng.randint(1, 8)):
                where = rng.randrange(128, min(len(data), 4096))
                if rng.random() < 0.3:  # a length field made absurd
                    data[where : where + 4] = b"\xff\xff\xff\x7f"
                else:
                    data[where] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(132, len(data))]
            path.write_bytes(bytes(data))
            tracemalloc.reset_peak()
            try:
                header = read_instance_header(
                    path, scratch_dir=tmp_path, max_inflated_bytes=1 << 24
                )
                validate_instance(
                    header,
                    command_sop_class_uid=str(WSI_SOP_CLASS),
                    command_sop_instance_uid=str(header.dataset.get("SOPInstanceUID", "1.2")),
                    allowed_sop_classes={str(WSI_SOP_CLASS)},
                    limits=limits,
                )
                outcome = "accepted"
            except InvalidInstanceError as exc:
                outcome = f"0x{exc.status:04X}"
            _, peak = tracemalloc.get_traced_memory()
            assert peak < 64 * 1024 * 1024, f"{peak} bytes allocated for a {len(data)} B file"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        tracemalloc.stop()
    assert set(outcomes) - {"accepted"}, outcomes  # the mutations were refused, at least some
