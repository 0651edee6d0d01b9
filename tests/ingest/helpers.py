"""Helpers for the listener tests: real peers (DCMTK storescu, a pynetdicom SCU), real files.

"Byte-identical" in these tests means: the data set bytes after the File Meta Information of
the stored file equal the bytes the peer sent. The meta group itself is the one pynetdicom
writes for the transfer, so it differs by design. What the peer sent is known exactly for the
pynetdicom SCU here (it sends a file's data set bytes unchanged); DCMTK's storescu re-encodes
what it reads (it trims value padding, for instance), so for storescu the reference is what
DCMTK's own ``storescp +B`` (bit preserving) writes when the same storescu sends it the same
files: :func:`dcmtk_reference`.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config

from unitumour_dicom.ingest import ListenerService
from unitumour_dicom.runtime import Runtime

STORESCU = shutil.which("storescu")

#: storescu's option that proposes a file's transfer syntax (with -R: contexts from the files).
STORESCU_TS_OPTION = {
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1.99": "-xd",
}


@dataclass
class Listening:
    """A running listener in this process."""

    service: ListenerService
    runtime: Runtime
    host: str
    port: int


def dataset_offset(path: Path) -> int:
    """Where the data set starts: after the preamble, DICM and the File Meta group."""
    with open(path, "rb") as fh:
        head = fh.read(144)
    assert head[128:132] == b"DICM", f"{path} has no DICM prefix"
    (group_length,) = struct.unpack("<I", head[140:144])
    return 144 + group_length


def dataset_sha256(path: Path) -> str:
    """sha256 of the data set bytes after the File Meta Information."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(dataset_offset(path))
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_reference_cache: dict[Path, str] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dcmtk_reference(files: Iterable[Path], workdir: Path) -> dict[str, str]:
    """SOP Instance UID -> sha256 of the data set storescu sends for each file, as received
    bit-preserved by DCMTK's storescp (which prefers the files' own transfer syntax)."""
    paths = [Path(p) for p in files]
    by_syntax: dict[str, list[Path]] = {}
    for path in paths:
        if path not in _reference_cache:
            ts = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            by_syntax.setdefault(ts, []).append(path)
    for ts, todo in by_syntax.items():
        out = workdir / f"storescp-{len(_reference_cache)}"
        out.mkdir(parents=True)
        port = free_port()
        prefer = "+" + STORESCU_TS_OPTION[ts][1:]
        scp = subprocess.Popen(
            ["storescp", "+B", prefer, "-od", str(out), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda port=port: _connectable(port), timeout=10)
            result = storescu("127.0.0.1", port, todo, aec="ANY")
            assert result.returncode == 0, result.stderr
        finally:
            scp.terminate()
            scp.wait(10)
        received = {p.name.split(".", 1)[1]: p for p in out.iterdir()}
        for path in todo:
            copy = received[str(uid_of(path))]
            assert dcmread(copy, stop_before_pixels=True).file_meta.TransferSyntaxUID == ts
            _reference_cache[path] = dataset_sha256(copy)
    return {str(uid_of(p)): _reference_cache[p] for p in paths}


def _connectable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def storescu(
    host: str,
    port: int,
    files: Iterable[Path],
    *,
    aet: str = "SENDER",
    aec: str = "UNITUMOUR",
    extra: Iterable[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu proposing exactly the files' contexts (-R) in their transfer syntax."""
    assert STORESCU, "DCMTK storescu is not installed"
    paths = [Path(p) for p in files]
    syntaxes = {str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in paths}
    options = sorted({STORESCU_TS_OPTION[ts] for ts in syntaxes})
    if len(options) > 1:
        options = ["-x=", "+C", *options]
    args = [STORESCU, "-aet", aet, "-aec", aec, "-R", "-nh", *options, *extra]
    return subprocess.run(
        [*args, host, str(port), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pynetdicom_send(
    host: str,
    port: int,
    files: Iterable[Path],
    *,
    aet: str = "PYSENDER",
    aec: str = "UNITUMOUR",
    ssl_context: Any = None,
) -> list[int]:
    """Send files as they are (no re-encoding) from a pynetdicom SCU; the statuses answered."""
    paths = [Path(p) for p in files]
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    contexts = set()
    for path in paths:
        meta = dcmread(path, stop_before_pixels=True).file_meta
        contexts.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    for sop_class, ts in sorted(contexts):
        ae.add_requested_context(sop_class, ts)
    tls_args = (ssl_context, host) if ssl_context is not None else None
    previous = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate(host, port, ae_title=aec, tls_args=tls_args)
        if not assoc.is_established:
            return []
        statuses = []
        for path in paths:
            status = assoc.send_c_store(path)
            statuses.append(int(status.Status) if "Status" in status else -1)
        assoc.release()
        return statuses
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = previous


def echo(host: str, port: int, *, aet: str = "SENDER", aec: str = "UNITUMOUR") -> int | None:
    ae = AE(ae_title=aet)
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = 5
    assoc = ae.associate(host, port, ae_title=aec)
    if not assoc.is_established:
        return None
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status) if "Status" in status else None


def wait_until(condition: Callable[[], Any], timeout: float = 20, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def rewrite(
    source: Path, out: Path, change: Callable[[Any], None], *, new_uid: bool = True
) -> Path:
    """A copy of an instance with ``change`` applied to its data set (and a new SOP UID)."""
    ds = dcmread(source)
    if new_uid:
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    change(ds)
    ds.save_as(out, enforce_file_format=True)
    return out


def native_instance(
    template: Path, out: Path, *, tiles: int = 16, tile: int = 256, seed: int = 0
) -> Path:
    """A valid VL WSI VOLUME instance in explicit VR little endian, ``tiles`` x ``tiles`` frames
    of ``tile`` pixels (RGB), built on a phantom's header: a large instance without waiting
    for a renderer."""
    ds = dcmread(template)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    side = tiles * tile
    ds.TotalPixelMatrixColumns = ds.TotalPixelMatrixRows = side
    ds.Rows = ds.Columns = tile
    ds.NumberOfFrames = tiles * tiles
    ds.PhotometricInterpretation = "RGB"
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    for keyword in (
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "PerFrameFunctionalGroupsSequence",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    ds.DimensionOrganizationType = "TILED_FULL"
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, size=(tiles * tiles, tile, tile, 3), dtype=np.uint8)
    ds.PixelData = frames.tobytes()
    ds["PixelData"].VR = "OB"
    ds.save_as(out, enforce_file_format=True)
    return out


def uid_of(path: Path) -> UID:
    return UID(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID))


def associations_closed(listening: Listening, timeout: float = 10) -> list[Any]:
    """Every association row once none is open any more (closing follows the peer's release
    by a moment: the listener finishes the row when the connection closes)."""
    from sqlalchemy import select

    from unitumour_dicom.db import Association

    def closed() -> list[Any] | None:
        with listening.runtime.session() as session:
            rows = list(session.scalars(select(Association).order_by(Association.id)))
        return rows if rows and all(r.state != "open" for r in rows) else None

    return wait_until(closed, timeout=timeout)
