"""What a process builds from its settings once: database engine and file store.

Every process (listener, worker, web, CLI, tests) gets its dependencies from one Runtime and
passes them on explicitly; nothing reaches for a global.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from .config import Settings
from .db.session import get_engine, session_scope
from .permissions import private_dir
from .store import FileStore


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        url = self.settings.database_url
        if url.startswith("sqlite:///"):
            private_dir(self.settings.data_dir)
        return get_engine(
            url, echo=self.settings.database.echo, pool_size=self.settings.database.pool_size
        )

    @cached_property
    def store(self) -> FileStore:
        return FileStore(
            self.settings.store_root, min_free_percent=self.settings.store.min_free_percent
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work, committed at the end of the block."""
        with session_scope(self.engine) as session:
            yield session
