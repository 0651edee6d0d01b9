"""schemathesis against the OpenAPI description: generated requests to every operation,
logged in as an admin (with the CSRF header, so admin actions run too), find no server error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from .conftest import ARTIFACTS, LiveServer, SeededCase, login

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_openapi_description_covers_the_api(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/api/cases",
        "/api/cases/{slide_id}",
        "/api/cases/{slide_id}/overlay.png",
        "/api/jobs/{job_id}/rerun",
        "/api/deliveries/{delivery_id}/resend",
        "/healthz",
        "/readyz",
        "/metrics",
        "/dicomweb/studies",
        "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    ):
        assert path in paths, path
    assert "/cases" not in paths and "/login" not in paths  # pages are not the API
    assert spec["components"]["securitySchemes"]["APIKeyCookie"]["in"] == "cookie"


#: Operations that end the fuzzer's own session (it is on the server now, so ending it logs
#: the fuzzer out): fuzzed last, on their own, so the rest runs logged in.
SESSION_ENDING = r"^/api/(logout|sessions/\{session_id\}/end|users/\{username\}/sessions/end)$"


#: STOW-RS takes multipart/related bodies of DICOM files, which schemathesis cannot generate
#: ("no serializer"); tests/web/test_stow.py and the multipart reader's property test
#: (tests/dicomweb) cover them.
NOT_GENERATED = [
    "--exclude-operation-id",
    "stow_rs_store",
    "--exclude-operation-id",
    "stow_rs_store_in_study",
]


def _schemathesis(
    url: str, cookie: str, csrf: str, selection: list[str], report: Path, cwd: Path
) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/api/openapi.json",
        *selection,
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "15",
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--header",
        f"Cookie: unitumour_session={cookie}",
        "--header",
        f"X-CSRF-Token: {csrf}",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=540, env=env, cwd=cwd, check=False
    )


def test_schemathesis_finds_no_server_error(
    client: TestClient, live_server: LiveServer, case: SeededCase, tmp_path: Path
) -> None:
    csrf = login(client, "ada")
    cookie = client.cookies["unitumour_session"]
    # the live server shares the app (and its database), so the session is valid there
    proc = _schemathesis(
        live_server.url,
        cookie,
        csrf,
        ["--exclude-path-regex", SESSION_ENDING, *NOT_GENERATED],
        tmp_path / "junit.xml",
        tmp_path,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "schemathesis.txt").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "✅ Coverage" in proc.stdout and "✅ Fuzzing" in proc.stdout
    assert "Tested: 26" in proc.stdout or "Selected: " in proc.stdout
    assert "Authentication failed" not in proc.stdout  # logged in all along
    ending = _schemathesis(
        live_server.url,
        cookie,
        csrf,
        ["--include-path-regex", SESSION_ENDING],
        tmp_path / "junit-ending.xml",
        tmp_path,
    )
    (ARTIFACTS / "schemathesis-session-ending.txt").write_text(ending.stdout + ending.stderr)
    assert ending.returncode == 0, ending.stdout[-6000:] + ending.stderr[-2000:]
    assert "Tested: 3" in ending.stdout
