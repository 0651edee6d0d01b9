"""Who may associate: allowed and refused AE titles, source networks, per-source overrides,
and DICOM TLS with and without a valid client certificate (certificates made by openssl)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from unitumour_dicom.db import Association, AuditEvent, Slide
from unitumour_dicom.ingest import IngestEvent

from .helpers import Listening, associations_closed, echo, pynetdicom_send, storescu, wait_until

pytestmark = [pytest.mark.integration]


def associations(listening: Listening) -> list[Association]:
    return associations_closed(listening)


def rejection_audits(listening: Listening) -> list[AuditEvent]:
    with listening.runtime.session() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.event == IngestEvent.ASSOCIATION_REJECTED)
            )
        )


def test_an_unknown_calling_ae_is_rejected_with_the_reason_and_audited(listening_both, phantom):
    files = [phantom.level_paths[2][0]]
    refused = storescu(listening_both.host, listening_both.port, files, aet="INTRUDER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr
    allowed = storescu(listening_both.host, listening_both.port, files, aet="SENDER")
    assert allowed.returncode == 0, allowed.stderr
    rows = associations(listening_both)
    assert [(r.calling_ae, r.state) for r in rows] == [
        ("INTRUDER", "rejected"),
        ("SENDER", "released"),
    ]
    assert "'INTRUDER' is not on the allowed list" in rows[0].reject_reason
    (audit,) = rejection_audits(listening_both)
    assert audit.association_id == rows[0].id and "INTRUDER" in audit.message
    assert audit.details["rejection"] == "calling-AE-title-not-recognized"


def test_a_wrong_called_ae_title_is_rejected(listening, phantom):
    result = storescu(listening.host, listening.port, [phantom.level_paths[2][0]], aec="ELSEWHERE")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr
    (row,) = associations(listening)
    assert row.state == "rejected" and row.called_ae == "ELSEWHERE"


def test_callers_are_allowed_only_from_their_networks(sqlite_runtime, start_listener):
    elsewhere = start_listener(
        sqlite_runtime, callers=[{"ae_title": "SENDER", "networks": ["10.0.0.0/8"]}]
    )
    assert echo(elsewhere.host, elsewhere.port) is None
    assert "not allowed from 127.0.0.1" in associations(elsewhere)[0].reject_reason
    elsewhere.service.stop(grace_s=1)
    local = start_listener(
        sqlite_runtime, callers=[{"ae_title": "SENDER", "networks": ["127.0.0.0/8"]}]
    )
    assert echo(local.host, local.port) == 0


def test_a_per_source_quiet_time_applies_to_its_slides(sqlite_runtime, start_listener, phantom):
    listening = start_listener(
        sqlite_runtime,
        callers=[{"ae_title": "SENDER", "quiet_seconds": 7.5}, {"ae_title": "PYSENDER"}],
        quiet_seconds=2.5,
    )
    assert storescu(listening.host, listening.port, [phantom.level_paths[2][0]]).returncode == 0
    with listening.runtime.session() as session:
        slide = session.scalars(select(Slide)).one()
    assert slide.quiet_seconds == 7.5
    assert (slide.settle_at - slide.last_received_at).total_seconds() == pytest.approx(7.5)


# -- TLS -------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(cwd: Path, name: str, subject: str, *, ca: str | None, san: str | None = None) -> None:
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=cwd,
    )
    if ca is None:
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-signkey",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            cwd=cwd,
        )
        return
    extra = []
    if san:
        (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        *extra,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a server certificate for 127.0.0.1, a client certificate it signed, and a
    self-signed client certificate that no one trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cwd = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=UniTumour Test CA",
        cwd=cwd,
    )
    _issue(cwd, "server", "/CN=localhost", ca="ca", san="IP:127.0.0.1,DNS:localhost")
    _issue(cwd, "client", "/O=Test Hospital/CN=SENDER", ca="ca")
    _issue(cwd, "rogue", "/CN=ROGUE", ca=None)
    return cwd


def _tls_listener(start_listener, runtime, certs: Path, *, require_client_cert: bool) -> Listening:
    return start_listener(
        runtime,
        tls={
            "enabled": True,
            "certfile": certs / "server.crt",
            "keyfile": certs / "server.key",
            "ca_file": certs / "ca.crt",
            "require_client_cert": require_client_cert,
        },
    )


def test_mutual_tls_admits_a_client_certificate_from_the_ca_and_nothing_else(
    sqlite_runtime, start_listener, certificates, phantom
):
    c = certificates
    listening = _tls_listener(start_listener, sqlite_runtime, c, require_client_cert=True)
    files = [phantom.level_paths[2][0]]
    trusted = storescu(
        listening.host,
        listening.port,
        files,
        extra=["+tls", str(c / "client.key"), str(c / "client.crt"), "+cf", str(c / "ca.crt")],
    )
    assert trusted.returncode == 0, trusted.stderr
    rogue = storescu(
        listening.host,
        listening.port,
        files,
        extra=["+tls", str(c / "rogue.key"), str(c / "rogue.crt"), "+cf", str(c / "ca.crt")],
    )
    anonymous = storescu(
        listening.host, listening.port, files, extra=["+tla", "+cf", str(c / "ca.crt")]
    )
    plain = storescu(listening.host, listening.port, files)
    assert rogue.returncode != 0 and anonymous.returncode != 0 and plain.returncode != 0

    rows = wait_until(lambda: len(associations(listening)) == 4 and associations(listening))
    accepted = [r for r in rows if r.state == "released"]
    assert len(accepted) == 1
    assert accepted[0].tls and accepted[0].client_cert_subject == "O=Test Hospital,CN=SENDER"
    assert accepted[0].n_instances == 1
    refused = [r for r in rows if r.state == "rejected"]
    assert len(refused) == 3
    assert all(r.reject_reason.startswith("TLS handshake failed") for r in refused)
    assert len(rejection_audits(listening)) == 3


def test_tls_without_client_certificates_and_a_pynetdicom_peer(
    sqlite_runtime, start_listener, certificates, phantom
):
    listening = _tls_listener(
        start_listener, sqlite_runtime, certificates, require_client_cert=False
    )
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(certificates / "ca.crt")
    )
    statuses = pynetdicom_send(
        listening.host, listening.port, [phantom.level_paths[2][0]], ssl_context=context
    )
    assert statuses == [0]
    (row,) = associations(listening)
    assert row.tls and row.client_cert_subject is None and row.state == "released"
