"""One phantom case (slide, result, SEG, model identity) per session for the key-image tests."""

from __future__ import annotations

import pytest

from tests.findings.resultkit import PhantomCase, make_case


@pytest.fixture(scope="session")
def case(tmp_path_factory: pytest.TempPathFactory) -> PhantomCase:
    return make_case(tmp_path_factory.mktemp("keyimage-case"))
