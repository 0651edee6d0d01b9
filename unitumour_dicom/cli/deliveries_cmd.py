"""``unitumour deliveries list|show|retry``: where results went, and sending them again."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import fail, run_guarded, state

if TYPE_CHECKING:  # imported where used: `unitumour --help` needs no database layer
    from ..db import Delivery

deliveries_app = typer.Typer(help="Deliveries of results to destinations.", no_args_is_help=True)

#: DeliveryState's values, written out so that --help needs no database layer (a test holds
#: them equal).
_STATES = ["pending", "sending", "delivered", "failed"]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _row(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "result_id": d.result_id,
        "destination": d.destination,
        "address": f"{d.ae_title}@{d.host}:{d.port}",
        "state": d.state,
        "attempts": d.attempts,
        "last_status": None if d.last_status is None else f"0x{d.last_status:04X}",
        "last_error": d.last_error,
        "created_at": d.created_at.isoformat() if d.created_at else None,
        "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None,
        "give_up_at": d.give_up_at.isoformat() if d.give_up_at else None,
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
    }


@deliveries_app.command("list")
def list_deliveries(
    state_filter: Annotated[
        str | None,
        typer.Option("--state", help=f"Only deliveries in this state ({', '.join(_STATES)})."),
    ] = None,
    result_id: Annotated[int | None, typer.Option("--result", help="Only this result's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List deliveries, newest first: state, tries, the destination's last answer."""
    if state_filter is not None and state_filter not in _STATES:
        fail(f"--state must be one of {', '.join(_STATES)}")
    from sqlalchemy import select

    from ..db import Delivery

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
        if state_filter:
            query = query.where(Delivery.state == state_filter)
        if result_id is not None:
            query = query.where(Delivery.result_id == result_id)
        rows = [_row(d) for d in session.scalars(query)]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    if not rows:
        typer.echo("no deliveries")
        return
    typer.echo(
        f"{'ID':>5} {'RESULT':>6} {'DESTINATION':<14} {'STATE':<9} {'TRIES':>5} "
        f"{'STATUS':<7} {'NEXT TRY (UTC)':<19} LAST ERROR"
    )
    for r in rows:
        next_try = r["next_attempt_at"][:19].replace("T", " ") if r["next_attempt_at"] else "-"
        error = (r["last_error"] or "")[:70]
        typer.echo(
            f"{r['id']:>5} {r['result_id']:>6} {r['destination'][:14]:<14} {r['state']:<9} "
            f"{r['attempts']:>5} {r['last_status'] or '-':<7} {next_try:<19} {error}"
        )


@deliveries_app.command("show")
def show(delivery_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One delivery with every attempt and what the destination answered."""
    from ..db import Delivery

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            fail(f"no delivery {delivery_id}")
        for key, value in _row(delivery).items():
            typer.echo(f"{key:>16}: {'-' if value is None else value}")
        for n, a in enumerate(delivery.attempts_log, 1):
            status = "-" if a.status is None else f"0x{a.status:04X}"
            outcome = "ok" if a.ok else f"failed: {a.error}"
            typer.echo(f"  try {n}: {_when(a.started_at)} status {status} {outcome}")


@deliveries_app.command("retry")
def retry(
    delivery_id: Annotated[int, typer.Argument(metavar="ID")],
    force: Annotated[
        bool, typer.Option("--force", help="Also send a delivered result again.")
    ] = False,
    send_now: Annotated[
        bool, typer.Option("--send-now", help="Try at once here instead of leaving it due.")
    ] = False,
) -> None:
    """Make a failed (or pending) delivery due now, with a fresh maximum age (the web app's
    re-send does the same, through the same library function)."""
    from ..db import Delivery, DeliveryState
    from ..db.types import utcnow
    from ..deliver import deliver_one, resend_delivery
    from ..errors import UniTumourError
    from ..jobs import worker_name

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        try:
            resend_delivery(
                session=session,
                delivery_id=delivery_id,
                settings=runtime.settings.delivery,
                now=utcnow(),
                actor="cli",
                force=force,
            )
        except UniTumourError as exc:
            fail(str(exc))
    if send_now:
        # the sender's own path: claimed first, so a worker's sender cannot try it meanwhile
        deliver_one(delivery_id, runtime=runtime, worker=worker_name("cli"))
    with runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        outcome = _row(delivery)
    if not send_now:
        typer.echo(f"delivery {delivery_id} to {outcome['destination']} is due now")
    elif outcome["state"] == DeliveryState.DELIVERED:
        typer.echo(f"delivery {delivery_id} delivered to {outcome['address']}")
    else:
        typer.secho(
            f"delivery {delivery_id} {outcome['state']}: {outcome['last_error']}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
