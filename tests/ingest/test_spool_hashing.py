"""A large transfer's sha256 is computed on a thread of its own: the digest is the same as
hashing every byte in order, and the thread ends however the transfer ends."""

from __future__ import annotations

import hashlib
import os
import threading

from unitumour_dicom.ingest import spool as spool_module
from unitumour_dicom.ingest.spool import SpoolFile

CHUNK = 131072


def _hashers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "spool-hash")


def _write(spool: SpoolFile, data: bytes) -> None:
    view = memoryview(bytearray(data))  # as the reader hands PDU buffers over
    for start in range(0, len(data), CHUNK):
        spool.write(view[start : start + CHUNK])


def test_a_large_transfer_hashed_on_its_own_thread_has_the_digest_of_its_bytes(sqlite_runtime):
    store = sqlite_runtime.store
    size = spool_module.HASH_THREAD_BYTES + 5 * spool_module.HASH_BATCH_BYTES + 12345
    data = os.urandom(size)
    spool = SpoolFile(store.new_spool_path(), max_bytes=1 << 40, store=store)
    before = _hashers()
    _write(spool, data)
    assert _hashers() == before + 1  # the hashing moved off the reader
    reader = threading.Thread(target=spool.sync_now)  # the reader syncs while sha256 is asked
    reader.start()
    digest = spool.sha256
    reader.join()
    assert digest == hashlib.sha256(data).hexdigest()
    assert spool.path.read_bytes() == data
    assert _hashers() == before
    spool.discard()


def test_a_small_transfer_starts_no_thread(sqlite_runtime):
    store = sqlite_runtime.store
    data = os.urandom(spool_module.HASH_THREAD_BYTES // 2)
    spool = SpoolFile(store.new_spool_path(), max_bytes=1 << 40, store=store)
    before = _hashers()
    _write(spool, data)
    assert _hashers() == before
    assert spool.sha256 == hashlib.sha256(data).hexdigest()
    spool.discard()


def test_an_abandoned_or_refused_large_transfer_leaves_no_thread(sqlite_runtime):
    store = sqlite_runtime.store
    before = _hashers()
    data = os.urandom(spool_module.HASH_THREAD_BYTES + 3 * spool_module.HASH_BATCH_BYTES)
    abandoned = SpoolFile(store.new_spool_path(), max_bytes=1 << 40, store=store)
    _write(abandoned, data)
    abandoned.discard()  # the association ended: its digest is never asked for
    refused = SpoolFile(store.new_spool_path(), max_bytes=len(data) - CHUNK, store=store)
    _write(refused, data)  # goes over its limit after the thread started
    assert refused.refusal is not None
    refused.discard()
    assert _hashers() == before
    assert not abandoned.path.exists() and not refused.path.exists()
