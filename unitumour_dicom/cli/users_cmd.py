"""``unitumour users add|list|disable|enable|passwd|role|sessions|end-sessions``: local users
of the web app and their open web sessions."""

from __future__ import annotations

import getpass
import json
import sys
from enum import StrEnum
from typing import Annotated

import typer

from .common import fail, run_guarded, state

users_app = typer.Typer(help="Users of the web app (local accounts).", no_args_is_help=True)

_ACTOR = f"cli:{getpass.getuser()}"


class RoleChoice(StrEnum):
    """The values of db.UserRole, spelt out so that the users library and the database are
    imported by the commands that use them, not by ``unitumour --help`` (a test holds the two
    equal)."""

    viewer = "viewer"
    admin = "admin"


def _read_password(password_stdin: bool) -> str:
    """From standard input (one line, for scripts) or a hidden prompt asked twice."""
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, '._@-').")],
    role: Annotated[
        RoleChoice, typer.Option("--role", help="viewer or admin.")
    ] = RoleChoice.viewer,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user who can log in to the web app."""
    from .. import users
    from ..db import UserRole

    password = _read_password(password_stdin)
    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        user = run_guarded(
            users.add_user,
            session=session,
            username=name,
            password=password,
            role=UserRole(role.value),
            actor=_ACTOR,
        )
        typer.echo(f"added user {user.username} ({user.role})")


@users_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List the users, their roles, and whether they may log in."""
    from .. import users

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        rows = users.list_users(session=session)
        if as_json:
            for u in rows:
                typer.echo(
                    json.dumps(
                        {
                            "username": u.username,
                            "role": u.role,
                            "active": u.active,
                            "created_at": u.created_at.isoformat(),
                            "last_login_at": u.last_login_at.isoformat()
                            if u.last_login_at
                            else None,
                        }
                    )
                )
            return
        typer.echo(f"{'USER':<24} {'ROLE':<8} {'ACTIVE':<7} LAST LOG-IN")
        for u in rows:
            last = u.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if u.last_login_at else "never"
            typer.echo(f"{u.username:<24} {u.role:<8} {'yes' if u.active else 'no':<7} {last}")


@users_app.command("disable")
def disable(name: str) -> None:
    """Stop a user from logging in; ends the user's open sessions."""
    from .. import users

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        run_guarded(users.set_active, session=session, username=name, active=False, actor=_ACTOR)
    typer.echo(f"disabled user {name}")


@users_app.command("enable")
def enable(name: str) -> None:
    """Let a disabled user log in again."""
    from .. import users

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        run_guarded(users.set_active, session=session, username=name, active=True, actor=_ACTOR)
    typer.echo(f"enabled user {name}")


@users_app.command("passwd")
def passwd(name: str, password_stdin: PasswordStdin = False) -> None:
    """Set a new password; ends the user's open sessions."""
    from .. import users

    password = _read_password(password_stdin)
    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        run_guarded(
            users.set_password, session=session, username=name, password=password, actor=_ACTOR
        )
    typer.echo(f"password of {name} changed")


@users_app.command("role")
def role(name: str, new_role: Annotated[RoleChoice, typer.Argument(metavar="ROLE")]) -> None:
    """Change a user's role (viewer or admin)."""
    from .. import users
    from ..db import UserRole

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        run_guarded(
            users.set_role,
            session=session,
            username=name,
            role=UserRole(new_role.value),
            actor=_ACTOR,
        )
    typer.echo(f"{name} is now {new_role.value}")


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else "-"


@users_app.command("sessions")
def sessions(
    name: Annotated[str | None, typer.Argument(help="Only this user's sessions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List open web sessions (of one user, or of all), newest first."""
    from .. import users
    from ..login_sessions import list_sessions

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        if name is not None and users.get_user(session=session, username=name) is None:
            fail(f"no user named {name!r}")
        rows = list_sessions(session=session, username=name)
        if as_json:
            for r in rows:
                typer.echo(
                    json.dumps(
                        {
                            "id": r.id,
                            "username": r.user.username,
                            "created_at": r.created_at.isoformat(),
                            "last_seen_at": r.last_seen_at.isoformat(),
                            "expires_at": r.expires_at.isoformat(),
                            "remote_addr": r.remote_addr,
                            "user_agent": r.user_agent,
                        }
                    )
                )
            return
        typer.echo(f"{'ID':>6} {'USER':<24} {'LOGGED IN':<21} {'LAST SEEN':<21} {'FROM':<16}")
        for r in rows:
            typer.echo(
                f"{r.id:>6} {r.user.username:<24} {_when(r.created_at):<21} "
                f"{_when(r.last_seen_at):<21} {r.remote_addr or '-':<16}"
            )


@users_app.command("end-sessions")
def end_sessions(name: str) -> None:
    """End every open web session of a user now (audited); the user can log in again."""
    from .. import users

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        count = run_guarded(users.end_sessions, session=session, username=name, actor=_ACTOR)
    typer.echo(f"ended {count} session(s) of {name}")
