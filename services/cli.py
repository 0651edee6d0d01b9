"""The ``unitumour`` console script: the library's commands plus the process commands.

Process commands live here because they start services; the library never imports services.
"""

from __future__ import annotations

from unitumour_dicom.cli import app

from .demo import demo_command
from .listener import listener_command
from .serve import serve_command
from .watch import watch_command
from .web.command import web_app
from .worker import worker_command

app.command("listener")(listener_command)
app.add_typer(web_app, name="web")
app.command("worker")(worker_command)
app.command("serve")(serve_command)
app.command("watch")(watch_command)
app.command("demo")(demo_command)


def main(args: list[str] | None = None) -> None:
    app(args=args, prog_name="unitumour")


if __name__ == "__main__":
    main()
