"""``unitumour deliveries list|show|retry`` in-process, against a real database and peer."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.db import Delivery, DeliveryState, Result
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.deliver import plan_deliveries

from .conftest import delivery_settings, destination, free_port, make_result

pytestmark = pytest.mark.integration


def test_list_show_and_retry_send_now(sqlite_runtime, storescp, tmp_path, monkeypatch) -> None:
    scp = storescp()
    down_port = free_port()
    result_id = make_result(sqlite_runtime)
    # The command reads its settings (database, store, destinations) from a TOML file.
    config = tmp_path / "unitumour.toml"
    config.write_text(
        f"""data_dir = "{sqlite_runtime.settings.data_dir}"
[database]
url = "{sqlite_runtime.settings.database_url}"
[delivery]
always_to = ["pacs"]
[[delivery.destinations]]
name = "pacs"
ae_title = "STORESCP"
host = "127.0.0.1"
port = {scp.port}
"""
    )
    with sqlite_runtime.session() as session:
        result = session.get(Result, result_id)
        settings = delivery_settings(destination(down_port))  # planned while it was elsewhere
        (delivery,) = plan_deliveries(
            session=session, result=result, source_ae=None, settings=settings, caller_rules=[]
        )
        delivery.port = scp.port
        delivery.state = DeliveryState.FAILED
        delivery.last_error = "A-ASSOCIATE rejected"
        delivery_id = delivery.id

    runner = CliRunner()
    listed = runner.invoke(app, ["-c", str(config), "deliveries", "list"])
    assert listed.exit_code == 0, listed.output
    assert "failed" in listed.output and "A-ASSOCIATE rejected" in listed.output
    as_json = runner.invoke(
        app, ["-c", str(config), "deliveries", "list", "--json", "--state", "failed"]
    )
    assert [json.loads(line)["id"] for line in as_json.output.splitlines()] == [delivery_id]
    bad = runner.invoke(app, ["-c", str(config), "deliveries", "list", "--state", "lost"])
    assert bad.exit_code == 2 and "--state must be one of" in bad.output

    retried = runner.invoke(
        app, ["-c", str(config), "deliveries", "retry", str(delivery_id), "--send-now"]
    )
    assert retried.exit_code == 0, retried.output
    assert f"delivery {delivery_id} delivered to STORESCP@127.0.0.1:{scp.port}" in retried.output
    assert len(scp.received()) == 2
    shown = runner.invoke(app, ["-c", str(config), "deliveries", "show", str(delivery_id)])
    assert "delivered" in shown.output and "try 1:" in shown.output
    again = runner.invoke(app, ["-c", str(config), "deliveries", "retry", str(delivery_id)])
    assert again.exit_code == 2 and "use --force" in again.output
    missing = runner.invoke(app, ["-c", str(config), "deliveries", "retry", "9999"])
    assert missing.exit_code == 2 and "no delivery 9999" in missing.output
    with sqlite_runtime.session() as session:
        assert session.get(Delivery, delivery_id).delivered_at <= utcnow()
