"""422 answers that never echo what was sent.

FastAPI's default body for a request that fails validation carries each offending value
(``input``), so a log-in whose password is too long got the password back, in a response
that proxies, logs and browser tools keep. Here each error keeps only its type, where it is
(``loc``) and the message; the values (``input``, and ``ctx`` which can quote them) go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

_KEPT = ("type", "loc", "msg")


def redacted_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """The validation errors without the submitted values."""
    return [
        {key: jsonable_encoder(error[key]) for key in _KEPT if key in error}
        for error in errors
        if isinstance(error, dict)
    ]


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """The app's handler of RequestValidationError (a 422, as FastAPI answers it)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": redacted_errors(exc.errors())}, status_code=422)


__all__ = ["redacted_errors", "validation_error"]
