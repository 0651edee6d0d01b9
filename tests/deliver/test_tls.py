"""Delivery over TLS to DCMTK storescp that requires a client certificate: delivered with the
right CA and client certificate, never with a destination certificate we cannot verify."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from unitumour_dicom.config.sections import TLSSettings
from unitumour_dicom.db import Delivery, DeliveryState
from unitumour_dicom.db.types import utcnow

from .conftest import delivery_settings, destination, make_result
from .test_delivery import plan_and_try

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=d)  # fmt: skip


def _signed(d: Path, name: str, ca: str, san: str) -> None:
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=d)  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    _ca(d, "ca")
    _ca(d, "other-ca")
    _signed(d, "server", "ca", "IP:127.0.0.1")
    _signed(d, "client", "ca", "DNS:unitumour.test")
    return d


@pytest.mark.parametrize("trusted", [True, False])
def test_tls_delivery_verifies_both_ends(
    sqlite_runtime, storescp, pki: Path, trusted: bool
) -> None:
    scp = storescp("+tls", str(pki / "server.key"), str(pki / "server.crt"),
                   "+cf", str(pki / "ca.crt"))  # fmt: skip
    tls = TLSSettings(
        enabled=True,
        ca_file=pki / ("ca.crt" if trusted else "other-ca.crt"),
        certfile=pki / "client.crt",
        keyfile=pki / "client.key",
    )
    dest = destination(scp.port).model_copy(update={"tls": tls})
    result_id = make_result(sqlite_runtime)
    delivery_id = plan_and_try(sqlite_runtime, result_id, delivery_settings(dest), utcnow())
    with sqlite_runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if trusted:
            assert delivery.state == DeliveryState.DELIVERED, delivery.last_error
            assert len(scp.received()) == 2
        else:
            assert delivery.state != DeliveryState.DELIVERED
            assert "TLS handshake failed" in delivery.last_error
            assert scp.received() == []
