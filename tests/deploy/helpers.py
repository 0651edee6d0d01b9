"""What the deployment tests share: where things are, the CLI as a tree, settings names."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import typer.main

from unitumour_dicom.config import Settings, load_settings
from unitumour_dicom.config.reference import environment_variable_names

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCS = REPO / "docs"

#: A settings variable anywhere in a file (the name as written, upper case by convention).
ENV_TOKEN = re.compile(r"\bUNITUMOUR_[A-Z0-9_]+\b")
#: Variables that are not settings but that the project reads on purpose.
NON_SETTINGS_VARIABLES = frozenset({"UNITUMOUR_TEST_POSTGRES"})


def load_orthanc_json(path: Path) -> dict[str, Any]:
    """An Orthanc configuration file as Orthanc reads it: JSON with whole-line ``//``
    comments (Orthanc's own default configuration is written so)."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("//")]
    return json.loads("\n".join(lines))


@cache
def valid_env_names() -> frozenset[str]:
    return environment_variable_names()


def unknown_env_names(text: str) -> set[str]:
    return {
        name
        for name in ENV_TOKEN.findall(text)
        if name not in valid_env_names() and name not in NON_SETTINGS_VARIABLES
    }


# Typer carries its own copy of click, so commands are recognised by what they have:
# a group has ``commands``, an option is a parameter whose ``param_type_name`` is "option".


@cache
def cli() -> Any:
    """The whole ``unitumour`` command, process commands included (as the console script)."""
    import unitumour_services.cli  # noqa: F401  (registers listener, worker, web, serve)

    from unitumour_dicom.cli import app

    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    return command


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def _find_option(command: Any, name: str) -> Any:
    for param in command.params:
        if param.param_type_name == "option" and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def command_problems(argv: Sequence[str]) -> list[str]:
    """What is wrong with the arguments of one ``unitumour`` call; empty when it would parse.

    Walks the real command tree: each word names a subcommand while the current command is a
    group, each ``--option`` must exist on the command it is given to, and a group that cannot
    run by itself must be given a subcommand.
    """
    command = cli()
    path = ["unitumour"]
    problems: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if arg.startswith("-") and arg != "-":
            name = arg.split("=", 1)[0]
            option = _find_option(command, name)
            if option is None:
                problems.append(f"{' '.join(path)}: no option {name}")
            elif option.is_eager:  # --version, --help: answers and exits
                return problems
            elif not (option.is_flag or option.count) and "=" not in arg:
                i += 1  # its value
            i += 1
            continue
        if _is_group(command):
            sub = command.commands.get(arg)
            if sub is None:
                problems.append(f"{' '.join(path)}: no command {arg!r}")
                return problems
            command = sub
            path.append(arg)
        i += 1
    if _is_group(command) and not command.invoke_without_command:
        problems.append(f"{' '.join(path)}: needs a subcommand")
    return problems


_SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}
_CALL = re.compile(r"(?:[\w./-]*/bin/)?(?<![\w-])unitumour(?=\s|$)")
#: Words after which the next word is a command (so ``unitumour`` there is a call).
_COMMAND_POSITION = {
    "",
    "&&",
    "||",
    ";",
    "|",
    "do",
    "then",
    "else",
    "until",
    "while",
    "if",
    "!",
    "exec",
    "sudo",
    "time",
    "nice",
    "$",
    "RUN",
    "-c",
}
_SUDO = re.compile(r"(?:^|\s)sudo(?:\s+(?:-[ugCD]\s+\S+|-\S+))*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


def unitumour_calls(shell_text: str) -> Iterator[list[str]]:
    """Every ``unitumour ...`` call in a line of shell, as its argument list.

    Only where a command can stand (line start, after ``&&``, ``until``, an assignment ...):
    ``useradd ... unitumour`` or ``sudo -u unitumour`` name the user, not the program; a path
    ending in ``bin/unitumour`` is the program.
    """
    for match in _CALL.finditer(shell_text):
        before = shell_text[: match.start()].rstrip()
        previous = before.split()[-1] if before.split() else ""
        previous = previous.lstrip("'\"(")
        if before.endswith(("'", '"', "(")) and not previous:
            previous = ""
        if previous in ("-u", "--user", "-g", "--group", "-o", "-G"):
            continue  # a user or group name
        after_sudo = _SUDO.search(before) is not None
        if not after_sudo and previous not in _COMMAND_POSITION and not _ASSIGNMENT.match(previous):
            continue
        rest = shell_text[match.end() :]
        try:
            words = shlex.split(rest, comments=True)
        except ValueError:
            words = rest.split()
        args: list[str] = []
        for word in words:
            if word in _SHELL_STOP or word.startswith(("|", ">", ";", "&", "$(")):
                break
            args.append(word.rstrip(";"))
        yield args


def load_example_settings(
    toml_path: Path | None, env: Mapping[str, str], tmp_path: Path, monkeypatch: Any
) -> Settings:
    """Load settings exactly as a deployed process would: its TOML file and its environment.

    (conftest points XDG_DATA_HOME into the test's folder, so nothing reads this machine's.)
    """
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings(toml_path)


def read_toml(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)
