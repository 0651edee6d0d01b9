"""The audit event catalogue: one enum, values as stored, and no code spelled anywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from unitumour_dicom.db import AuditEventName
from unitumour_dicom.ingest.events import IngestEvent
from unitumour_dicom.jobs.events import JobEvent

pytestmark = pytest.mark.unittest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "unitumour_dicom", ROOT / "services"]


def test_values_are_the_stored_codes_and_each_is_spelled_once() -> None:
    values = [e.value for e in AuditEventName]
    assert len(values) == len(set(values))
    for event in AuditEventName:
        subject, what = event.value.split(".")
        assert subject and what and event.subject == subject
        assert event.name == event.value.upper().replace(".", "_")
    # codes already in databases keep their values
    assert AuditEventName.JOB_RERUN == "job.rerun"
    assert AuditEventName.DELIVERY_RETRY_REQUESTED == "delivery.retry_requested"
    assert AuditEventName.ACCESS_VIEWED == "access.viewed"
    assert AuditEventName.USER_LOGIN_LOCKED == "user.login_locked"


def test_the_stage_names_are_the_one_catalogue() -> None:
    assert JobEvent is AuditEventName
    assert IngestEvent is AuditEventName


def _event_arguments(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """The ``event=`` argument of every call of ``record_event``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name != "record_event":
            continue
        for keyword in node.keywords:
            if keyword.arg == "event":
                found.append((node.lineno, keyword.value))
    return found


def test_no_caller_spells_an_event_code_itself() -> None:
    """Every ``record_event(event=...)`` names a member (or passes one on), never a string."""
    offenders = []
    calls = 0
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for line, value in _event_arguments(tree):
                calls += 1
                if isinstance(value, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert calls > 30  # the walk found the callers
    assert offenders == []
