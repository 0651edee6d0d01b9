"""CSV lists that operators write by hand (image manifests, slide lists): read them whole and
check their header before any row is used, so a typo fails at once with the file's name."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .errors import UniTumourError


def read_csv_rows(
    path: Path, columns: Sequence[str], *, what: str, error: type[UniTumourError]
) -> list[dict[str, str]]:
    """The rows of the CSV file at ``path`` (a byte-order mark is tolerated), once its header
    is known to hold ``columns``; ``error``, calling the file ``what``, when it cannot be read
    or lacks one."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    missing = [c for c in columns if c not in header]
    if missing:
        raise error(f"{what} {path} lacks column(s) {', '.join(missing)}")
    return rows
