"""Logging settings: the level the settings choose and JSON lines for log shippers."""

import json
import logging
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest

from unitumour_dicom.cli.common import JsonLogFormatter, apply_logging_settings
from unitumour_dicom.config import load_settings

pytestmark = pytest.mark.unittest


@pytest.fixture
def root_handler() -> Iterator[tuple[logging.Handler, StringIO]]:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    yield handler, stream
    root.handlers = saved_handlers
    root.setLevel(saved_level)


def test_json_format_writes_one_object_a_line(root_handler, tmp_path: Path) -> None:
    handler, stream = root_handler
    settings = load_settings(data_dir=tmp_path, logging={"json_format": True, "level": "INFO"})
    apply_logging_settings(settings)
    assert isinstance(handler.formatter, JsonLogFormatter)
    assert logging.getLogger().level == logging.INFO
    log = logging.getLogger("unitumour.test")
    log.info("stored %s", "1.2.3", extra={"association": "assoc=7"})
    try:
        raise ValueError("bad <frame>")
    except ValueError:
        log.exception("refused")
    lines = stream.getvalue().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "stored 1.2.3" and first["level"] == "INFO"
    assert first["association"] == "assoc=7" and first["logger"] == "unitumour.test"
    assert first["time"].endswith("+00:00")
    assert second["message"] == "refused" and "ValueError: bad <frame>" in second["exception"]


def test_plain_format_and_explicit_level_are_kept(root_handler, tmp_path: Path) -> None:
    handler, _ = root_handler
    logging.getLogger().setLevel(logging.DEBUG)  # as -d sets it before the settings load
    apply_logging_settings(load_settings(data_dir=tmp_path, logging={"level": "ERROR"}))
    assert logging.getLogger().level == logging.DEBUG
    assert not isinstance(handler.formatter, JsonLogFormatter)


def test_listener_lines_are_json_with_the_association(root_handler, tmp_path: Path) -> None:
    from unitumour_services.listener import configure_logging

    handler, stream = root_handler
    configure_logging(load_settings(data_dir=tmp_path, logging={"json_format": True}))
    assert isinstance(handler.formatter, JsonLogFormatter)
    logging.getLogger("unitumour.test").warning("peer vanished")
    assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "peer vanished"
