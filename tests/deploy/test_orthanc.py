"""The PACS routing example: Orthanc forwards whole-slide series to the listener and archives
the Segmentations that come back; its configuration and ours must name each other exactly."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from pydicom.uid import VLWholeSlideMicroscopyImageStorage

from .helpers import DEPLOY, load_example_settings, load_orthanc_json

pytestmark = pytest.mark.unittest

ORTHANC = DEPLOY / "orthanc"


@pytest.fixture(scope="module")
def orthanc() -> dict:
    return load_orthanc_json(ORTHANC / "orthanc.json")


@pytest.fixture
def ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    return load_example_settings(ORTHANC / "unitumour.toml", {}, tmp_path, monkeypatch)


def _target(orthanc: dict) -> tuple[str, dict]:
    lua = (ORTHANC / "unitumour-routing.lua").read_text()
    (name,) = re.findall(r"local TARGET = '([^']+)'", lua)
    return name, orthanc["DicomModalities"][name]


def test_orthanc_sends_to_the_listener(orthanc: dict, ours) -> None:  # type: ignore[no-untyped-def]
    _, modality = _target(orthanc)
    assert modality["AET"] == ours.listener.ae_title
    assert modality["Port"] == ours.listener.port
    assert ours.listener.host == "0.0.0.0"


def test_listener_admits_orthanc_and_returns_results_to_it(orthanc: dict, ours) -> None:  # type: ignore[no-untyped-def]
    (caller,) = [c for c in ours.listener.callers if c.ae_title == orthanc["DicomAet"]]
    destinations = {d.name: d for d in ours.delivery.destinations}
    (name,) = caller.destinations
    assert destinations[name].ae_title == orthanc["DicomAet"]
    assert destinations[name].port == orthanc["DicomPort"]


def test_orthanc_accepts_the_segmentations(orthanc: dict, ours) -> None:  # type: ignore[no-untyped-def]
    # stores are refused from unknown AEs, so our calling AE must be a modality allowed to store
    assert orthanc["DicomAlwaysAllowStore"] is False
    senders = [m for m in orthanc["DicomModalities"].values() if m.get("AllowStore")]
    assert ours.delivery.calling_ae_title in {m["AET"] for m in senders}
    assert orthanc["OverwriteInstances"] is False  # a resent SEG never replaces the archived one


def test_routing_script(orthanc: dict) -> None:
    scripts = [Path(p).name for p in orthanc["LuaScripts"]]
    assert scripts == ["unitumour-routing.lua"]
    lua = (ORTHANC / "unitumour-routing.lua").read_text()
    assert "function OnStableSeries(seriesId, tags, metadataOfSeries)" in lua
    assert f"'{VLWholeSlideMicroscopyImageStorage}'" in lua
    assert "tags['Modality'] ~= 'SM'" in lua  # SEGs (Modality SEG) are archived, not routed
    _, modality = _target(orthanc)
    assert f"metadata(instanceId, 'RemoteAET') == '{modality['AET']}'" in lua
    assert "'/modalities/' .. TARGET .. '/store'" in lua
    assert orthanc["StableAge"] > 0


def test_orthanc_does_not_compare_addresses_with_host_names(orthanc: dict) -> None:
    # Orthanc matches the peer's IP address against "Host" as a string: with host names there
    # (as shipped), a host check would refuse every store. Either no check, or addresses only.
    hosts = [m["Host"] for m in orthanc["DicomModalities"].values()]
    if orthanc["DicomCheckModalityHost"]:
        for host in hosts:
            ipaddress.ip_address(host)  # raises for a host name
    text = (ORTHANC / "orthanc.json").read_text()
    assert "DicomCheckModalityHost" in text.split("// false on purpose")[1][:600]
