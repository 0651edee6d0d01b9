"""The model registry: each model that runs gets one row in ``models``, keyed by its digest."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db.models import ModelVersion
from .checkpoint import LoadedModel

logger = logging.getLogger(__name__)


def register_model(*, session: Session, model: LoadedModel) -> ModelVersion:
    """The ``models`` row for ``model``, created on first use (idempotent).

    The row is identified by (name, version, weights_sha256); its card is kept verbatim so a
    result's provenance still says what the model was after the files are gone. Two workers
    registering the same model at once both end up with the one row: the loser of the race
    sees the unique constraint fire inside a savepoint and reads the winner's row.
    """
    card = model.card
    query = select(ModelVersion).where(
        ModelVersion.name == card.name,
        ModelVersion.version == card.version,
        ModelVersion.weights_sha256 == card.weights_sha256,
    )
    row = session.scalars(query).one_or_none()
    if row is not None:
        return row
    row = ModelVersion(
        name=card.name,
        version=card.version,
        weights_sha256=card.weights_sha256,
        architecture=card.architecture,
        card=card.to_dict(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        row = session.scalars(query).one()
        return row
    logger.info("registered model %s %s (%s)", card.name, card.version, card.weights_sha256[:12])
    return row
