"""``unitumour db upgrade|downgrade|current``: schema migrations through Alembic."""

from __future__ import annotations

import typer

from ..permissions import private_dir
from .common import run_guarded, state

db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)


def _url() -> str:
    settings = run_guarded(state.settings)
    if settings.database_url.startswith("sqlite:///"):
        private_dir(settings.data_dir)
    return settings.database_url


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Bring the schema up to REVISION (default: the newest)."""
    from ..db import migrate

    url = _url()
    migrate.upgrade(url, revision)
    typer.echo(f"database at revision {migrate.current_revision(url)}")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Take the schema back to REVISION."""
    from ..db import migrate

    url = _url()
    migrate.downgrade(url, revision)
    typer.echo(f"database at revision {migrate.current_revision(url) or 'base'}")


@db_app.command("current")
def current() -> None:
    """Print the schema revision and whether it is the newest."""
    from ..db import migrate

    url = _url()
    rev = migrate.current_revision(url)
    head = migrate.head_revision(url)
    note = "(head)" if rev == head else f"(head is {head}; run 'unitumour db upgrade')"
    typer.echo(f"{rev or 'base'} {note}")
