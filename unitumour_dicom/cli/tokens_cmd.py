"""``unitumour tokens create|list|revoke``: credentials of machine clients that send by STOW-RS."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from .common import run_guarded, state

tokens_app = typer.Typer(
    help="Tokens of senders that store slides by DICOMweb (STOW-RS).", no_args_is_help=True
)

_ACTOR = f"cli:{getpass.getuser()}"


@tokens_app.command("create")
def create(
    sender: Annotated[
        str,
        typer.Argument(
            help="The sender's AE title: the caller rule (listener.callers) whose networks, "
            "quiet time and destinations apply to what it sends."
        ),
    ],
    note: Annotated[str | None, typer.Option("--note", help="Who or what holds it.")] = None,
    valid_days: Annotated[
        int | None, typer.Option("--valid-days", help="Expires after this many days.")
    ] = None,
) -> None:
    """Make a token; it is printed once (standard output) and only its hash is kept."""
    from .. import sender_tokens

    settings = state.settings()
    known = {rule.ae_title for rule in settings.listener.callers}
    if sender.strip() not in known and not settings.listener.accept_any_caller:
        typer.secho(
            f"warning: no caller rule for {sender!r} in listener.callers; "
            "its requests will be refused until one is added",
            fg=typer.colors.YELLOW,
            err=True,
        )
    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        issued = run_guarded(
            sender_tokens.create_token,
            session=session,
            sender=sender,
            actor=_ACTOR,
            note=note,
            valid_days=valid_days,
        )
    typer.echo(issued.secret)
    expiry = f", expires {issued.expires_at:%Y-%m-%d}" if issued.expires_at else ""
    typer.secho(
        f"token {issued.id} ({issued.prefix}...) for {issued.sender}{expiry}; "
        "give it to the sender now: it cannot be shown again",
        err=True,
    )


@tokens_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List the tokens (never their secrets): sender, state, last use."""
    from .. import sender_tokens

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        rows = sender_tokens.list_tokens(session)
        for row in rows:
            status = "revoked" if row.revoked_at else "active"
            record = {
                "id": row.id,
                "sender": row.sender,
                "prefix": row.prefix,
                "status": status,
                "note": row.note,
                "created_at": row.created_at.isoformat(),
                "created_by": row.created_by,
                "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
                "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
                "last_used_from": row.last_used_from,
            }
            if as_json:
                typer.echo(json.dumps(record))
            else:
                used = record["last_used_at"] or "never used"
                typer.echo(
                    f"{row.id:>4}  {row.sender:<16} {row.prefix}...  {status:<7}  {used}"
                    + (f"  {row.note}" if row.note else "")
                )


@tokens_app.command("revoke")
def revoke(token_id: Annotated[int, typer.Argument(help="The token's id (tokens list).")]) -> None:
    """Revoke a token at once."""
    from .. import sender_tokens

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        row = run_guarded(
            sender_tokens.revoke_token, session=session, token_id=token_id, actor=_ACTOR
        )
        typer.echo(f"revoked token {row.id} ({row.prefix}...) of {row.sender}")
