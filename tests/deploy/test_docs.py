"""The operator docs say what the code does: every command they show parses in the real CLI,
every setting they name exists, every TOML fragment loads, every link resolves, the TLS
recipe makes certificates the listener accepts, and the conformance tables match the code."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from unitumour_dicom.config import load_settings
from unitumour_dicom.config.reference import settings_sections
from unitumour_dicom.config.sections import TLSSettings

from .helpers import DEPLOY, DOCS, REPO, command_problems, unitumour_calls

pytestmark = pytest.mark.unittest

HAND_WRITTEN = [
    DOCS / "README.md",
    DOCS / "operator-guide.md",
    DOCS / "model-guide.md",
    DOCS / "conformance.md",
    DEPLOY / "README.md",
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(path: Path, language: str | None = None) -> list[str]:
    return [
        body
        for lang, body in FENCE.findall(path.read_text(encoding="utf-8"))
        if language is None or lang == language
    ]


def _shell_lines(path: Path) -> list[str]:
    """Command lines of the shell blocks, continuation lines joined."""
    lines: list[str] = []
    for body in _blocks(path, "sh"):
        pending = ""
        for raw in body.splitlines():
            pending += " " + raw.strip().rstrip("\\")
            if not raw.rstrip().endswith("\\"):
                lines.append(pending.strip())
                pending = ""
    return lines


_WRAPPERS = re.compile(
    r"docker compose exec (?:-\w+ )*\S+ |kubectl (?:-n \S+ )?exec (?:-\w+ )*\S+ -- "
)


def _doc_calls(path: Path) -> list[list[str]]:
    calls = []
    for line in _shell_lines(path):
        calls += list(unitumour_calls(_WRAPPERS.sub("", line)))
    text = path.read_text(encoding="utf-8")
    for span in re.findall(r"`(unitumour [^`]+)`", text):
        calls += list(unitumour_calls(span))
    return calls


@pytest.mark.parametrize("path", HAND_WRITTEN, ids=lambda p: p.name)
def test_every_command_shown_exists(path: Path) -> None:
    calls = _doc_calls(path)
    problems = [p for argv in calls for p in command_problems(argv)]
    assert problems == []


def _without_global_options(argv: list[str]) -> list[str]:
    while argv and argv[0] in ("-c", "--config", "-v", "-q", "-d"):
        argv = argv[2:] if argv[0] in ("-c", "--config") else argv[1:]
    return argv


def test_the_guides_show_the_commands_an_operator_needs() -> None:
    shown = {
        " ".join(_without_global_options(argv)[:2]) for p in HAND_WRITTEN for argv in _doc_calls(p)
    }
    for needed in (
        "db upgrade",
        "db current",
        "listener",
        "worker",
        "worker --queue",
        "web",
        "serve",
        "users add",
        "deliveries list",
        "deliveries retry",
        "retention purge",
        "config show",
        "train --manifest",
        "evaluate --slides",
        "web fetch-viewer",
    ):
        assert needed in shown, needed


def _known_keys() -> set[str]:
    keys = set()
    for section in settings_sections():
        keys.add(section.toml_header.strip("[]"))
        for field in section.fields:
            keys.add(field.toml_key.replace("[]", ""))
    return keys - {""}


@pytest.mark.parametrize("path", HAND_WRITTEN, ids=lambda p: p.name)
def test_every_setting_named_exists(path: Path) -> None:
    sections = {s.toml_header.strip("[]").split(".")[0] for s in settings_sections()} - {""}
    alternatives = "|".join(sorted(sections))
    pattern = re.compile(rf"`\[*((?:{alternatives})\.[a-z_.]+)\]*")
    files = (".yaml", ".key", ".crt", ".csr", ".toml", ".md", ".service", ".json", ".lua")
    named = {n for n in pattern.findall(path.read_text(encoding="utf-8")) if not n.endswith(files)}
    if path.name in ("operator-guide.md", "conformance.md", "model-guide.md"):
        assert named, "the page names no setting"
    assert named - _known_keys() == set()


def _stub_destinations(data: dict[str, Any]) -> None:
    """Fragments route to destinations defined in another fragment: define them here."""
    delivery = data.setdefault("delivery", {})
    defined = {d["name"] for d in delivery.get("destinations", [])}
    wanted = set(delivery.get("always_to", []))
    for rule in data.get("listener", {}).get("callers", []):
        wanted |= set(rule.get("destinations", []))
    delivery.setdefault("destinations", [])
    for name in sorted(wanted - defined):
        delivery["destinations"].append(
            {"name": name, "ae_title": name[:16], "host": "h.example.org", "port": 104}
        )


@pytest.mark.parametrize("path", HAND_WRITTEN, ids=lambda p: p.name)
def test_every_toml_fragment_loads(path: Path, tmp_path: Path) -> None:
    for fragment in _blocks(path, "toml"):
        data = tomllib.loads(fragment)
        _stub_destinations(data)
        load_settings(data_dir=tmp_path, **data)


@pytest.mark.parametrize("path", [*HAND_WRITTEN, DOCS / "configuration.md"], ids=lambda p: p.name)
def test_links_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        assert resolved.exists(), f"{path.name}: {target}"
        if anchor and resolved.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", resolved.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{path.name}: #{anchor}"


def test_conformance_statuses_are_the_listeners() -> None:
    from unitumour_dicom.ingest import status

    text = (DOCS / "conformance.md").read_text(encoding="utf-8")
    table = text.split("## C-STORE statuses")[1].split("##")[0]
    documented = {int(code, 16) for code in re.findall(r"^\| (0x[0-9A-F]{4}) \|", table, re.M)}
    assert documented == {int(s) for s in status.StoreStatus}
    rejections = text.split("## Association rejections")[1].split("##")[0]
    for rejection in (
        status.CALLING_AE_NOT_RECOGNIZED,
        status.CALLED_AE_NOT_RECOGNIZED,
        status.LOCAL_LIMIT_EXCEEDED,
        status.TEMPORARY_CONGESTION,
    ):
        assert rejection.name in rejections


def test_conformance_sop_classes_are_the_listeners() -> None:
    from unitumour_dicom.ingest.contexts import VERIFICATION_SOP_CLASS, WSI_SOP_CLASS

    text = (DOCS / "conformance.md").read_text(encoding="utf-8")
    assert f"| {VERIFICATION_SOP_CLASS} |" in text
    assert f"| {WSI_SOP_CLASS} |" in text
    assert "| 1.2.840.10008.5.1.4.1.1.66.4 |" in text  # Segmentation Storage


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_tls_recipe_makes_certificates_the_listener_accepts(tmp_path: Path) -> None:
    (recipe,) = [b for b in _blocks(DOCS / "operator-guide.md", "sh") if "# tls-recipe" in b]
    script = recipe.replace("cd /etc/unitumour/tls", f"cd {tmp_path}")
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "listener.crt: OK" in done.stdout and "scanner1.crt: OK" in done.stdout

    from unitumour_dicom.ingest.tls import certificate_subject, server_ssl_context

    server = server_ssl_context(
        TLSSettings(
            enabled=True,
            certfile=tmp_path / "listener.crt",
            keyfile=tmp_path / "listener.key",
            ca_file=tmp_path / "ca.crt",
            require_client_cert=True,
        )
    )
    subjects: list[str | None] = []
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]

        def accept_one() -> None:
            conn, _ = listening.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    subjects.append(certificate_subject(tls))
                    tls.sendall(b"ok")
            except ssl.SSLError:
                subjects.append(None)

        def client(with_certificate: bool) -> bytes:
            context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
            if with_certificate:
                context.load_cert_chain(tmp_path / "scanner1.crt", tmp_path / "scanner1.key")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    return tls.recv(2)

        for with_certificate in (True, False):
            thread = threading.Thread(target=accept_one)
            thread.start()
            if with_certificate:
                assert client(True) == b"ok"
            else:  # mutual TLS: a sender without a certificate is refused
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    client(False)
            thread.join(10)
    assert subjects[0] is not None and "SCANNER1" in subjects[0]
    assert subjects[1] is None


def test_docs_do_not_leave_the_repository() -> None:
    # links into the repository stay inside it
    for path in HAND_WRITTEN:
        for target in re.findall(r"\]\((\.\.[^)]*)\)", path.read_text(encoding="utf-8")):
            assert (
                REPO in (path.parent / target).resolve().parents
                or (path.parent / target).resolve() == REPO
            )
