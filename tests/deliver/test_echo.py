"""``unitumour destinations echo`` and the library behind it, against real peers: DCMTK
storescp (plain and TLS with a client certificate), a port nobody listens on, a pynetdicom
SCP that rejects a called AE title it does not know, and a socket that never answers."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.config.sections import TLSSettings
from unitumour_dicom.deliver.echo import EchoOutcome, echo_destination

from .conftest import destination, free_port
from .test_tls import pki  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, *blocks: str) -> Path:
    path = tmp_path / "unitumour.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[delivery]\ncalling_ae_title = "UNITUMOUR"\n'
        + "".join(blocks)
    )
    return path


def _dest(name: str, ae: str, port: int, tls: str = "") -> str:
    return (
        f'[[delivery.destinations]]\nname = "{name}"\nae_title = "{ae}"\n'
        f'host = "127.0.0.1"\nport = {port}\n{tls}'
    )


@pytest.fixture
def strict_scp():
    """A Verification SCP that rejects any called AE title but its own (as PACSs do)."""
    ae = AE(ae_title="STRICTPACS")
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    yield port
    server.shutdown()


def test_echo_cli_success_refused_and_rejected(storescp, strict_scp, tmp_path) -> None:
    scp = storescp()
    down = free_port()
    config = _config(
        tmp_path,
        _dest("pacs", "STORESCP", scp.port),
        _dest("down", "STORESCP", down),
        _dest("strict", "NOTMYNAME", strict_scp),
        _dest("strict-ok", "STRICTPACS", strict_scp),
    )
    runner = CliRunner()
    out = runner.invoke(app, ["-c", str(config), "destinations", "echo", "--json"])
    assert out.exit_code == 1, out.output
    rows = {r["name"]: r for r in map(json.loads, out.output.splitlines())}
    assert rows["pacs"]["outcome"] == "success" and rows["pacs"]["ok"] is True
    assert rows["pacs"]["tls"] is False and rows["pacs"]["port"] == scp.port
    assert rows["down"]["outcome"] == "connection refused"
    assert rows["strict"]["outcome"] == "association rejected"
    assert "Called AE title not recognised" in rows["strict"]["detail"]
    assert rows["strict-ok"]["outcome"] == "success"
    assert all(r["seconds"] >= 0 for r in rows.values())

    one = runner.invoke(app, ["-c", str(config), "destinations", "echo", "pacs"])
    assert one.exit_code == 0, one.output
    assert "STORESCP" in one.output and f"127.0.0.1:{scp.port}" in one.output
    assert "plain" in one.output and "success" in one.output and " ms" in one.output
    table = runner.invoke(app, ["-c", str(config), "destinations", "echo", "down"])
    assert table.exit_code == 1 and "connection refused" in table.output
    unknown = runner.invoke(app, ["-c", str(config), "destinations", "echo", "nope"])
    assert unknown.exit_code == 2 and "no destination named 'nope'" in unknown.output


def test_echo_times_out_on_a_peer_that_never_answers() -> None:
    with socket.socket() as silent:  # accepts TCP (backlog) but never speaks DICOM
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        dest = destination(silent.getsockname()[1])
        report = echo_destination(dest, calling_ae_title="UNITUMOUR", timeout_s=1.0)
    assert report.outcome is EchoOutcome.TIMEOUT and not report.ok
    assert 0.9 <= report.seconds < 10


@pytest.mark.parametrize("trusted", [True, False])
def test_echo_over_tls(storescp, pki: Path, trusted: bool, tmp_path) -> None:  # noqa: F811
    scp = storescp("+tls", str(pki / "server.key"), str(pki / "server.crt"),
                   "+cf", str(pki / "ca.crt"))  # fmt: skip
    tls = (
        "[delivery.destinations.tls]\nenabled = true\n"
        f'ca_file = "{pki / ("ca.crt" if trusted else "other-ca.crt")}"\n'
        f'certfile = "{pki / "client.crt"}"\nkeyfile = "{pki / "client.key"}"\n'
    )
    config = _config(tmp_path, _dest("tls-pacs", "STORESCP", scp.port, tls))
    out = CliRunner().invoke(app, ["-c", str(config), "destinations", "echo", "--json"])
    (row,) = map(json.loads, out.output.splitlines())
    assert row["tls"] is True
    if trusted:
        assert out.exit_code == 0 and row["outcome"] == "success", row
    else:
        assert out.exit_code == 1 and row["outcome"] == "TLS failure", row
        assert "certificate verify failed" in row["detail"]


def test_echo_names_a_client_certificate_the_peer_refuses(storescp, pki: Path) -> None:  # noqa: F811
    scp = storescp(
        "+tls", str(pki / "server.key"), str(pki / "server.crt"), "+cf", str(pki / "other-ca.crt")
    )  # fmt: skip  (our client cert: not trusted)
    tls = TLSSettings(
        enabled=True,
        ca_file=pki / "ca.crt",
        certfile=pki / "client.crt",
        keyfile=pki / "client.key",
    )
    dest = destination(scp.port).model_copy(update={"tls": tls})
    report = echo_destination(dest, calling_ae_title="UNITUMOUR", timeout_s=5.0)
    assert report.outcome is EchoOutcome.TLS_FAILURE, report
