"""The model registry on SQLite and PostgreSQL: one row per (name, version, digest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from unitumour_dicom.db import ModelVersion
from unitumour_dicom.model import load_model, register_model
from unitumour_dicom.runtime import Runtime

from .checkpoints import write_untrained_checkpoint

pytestmark = pytest.mark.integration


def test_register_model_is_idempotent_and_keeps_the_card(runtime: Runtime, tmp_path: Path) -> None:
    model = load_model(write_untrained_checkpoint(tmp_path / "a"), device="cpu")
    with runtime.session() as session:
        first = register_model(session=session, model=model)
        session.flush()
        first_id = first.id
    with runtime.session() as session:
        again = register_model(session=session, model=model)
        assert again.id == first_id
        assert again.card == model.card.to_dict()
        assert again.weights_sha256 == model.card.weights_sha256
        assert again.architecture == "TumourUNet"
    other = load_model(write_untrained_checkpoint(tmp_path / "b", seed=1), device="cpu")
    assert other.card.weights_sha256 != model.card.weights_sha256
    with runtime.session() as session:
        register_model(session=session, model=other)
    with runtime.session() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 2


def test_a_second_session_finds_the_first_sessions_row(runtime: Runtime, tmp_path: Path) -> None:
    """Two open sessions (two workers): the second must neither fail nor add a second row."""
    model = load_model(write_untrained_checkpoint(tmp_path), device="cpu")
    with runtime.session() as s1, runtime.session() as s2:
        row1 = register_model(session=s1, model=model)
        s1.commit()
        row2 = register_model(session=s2, model=model)
        assert row2.id == row1.id
