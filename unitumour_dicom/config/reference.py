"""The configuration reference, generated from the settings model itself.

An operator's page that is written by hand drifts from the code; this one cannot, because
``unitumour config reference`` walks :class:`~unitumour_dicom.config.Settings` and prints every
field with its TOML key, its environment variable, its type, default, limits and description,
and a test fails when docs/configuration.md differs from what this module generates now.

:func:`environment_variable_names` is the same walk seen from the deployment side: the set of
``UNITUMOUR_*`` names the settings accept, which the deployment tests hold every compose file,
manifest and unit against.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .secret_files import SECRETS_DIR_ENV
from .settings import CONFIG_ENV, Settings

ENV_PREFIX = "UNITUMOUR_"
ENV_DELIMITER = "__"


@dataclass(frozen=True)
class FieldDoc:
    """One setting as an operator sees it.

    ``env`` is None for the fields of list items (a caller rule, a destination): pydantic
    settings reads such a list only whole, as JSON in the list's own variable.
    """

    toml_key: str
    env: str | None
    type: str
    default: str
    constraints: str
    description: str
    required: bool


@dataclass(frozen=True)
class SectionDoc:
    """A TOML table (``[listener]``) or array of tables (``[[listener.callers]]``)."""

    title: str
    toml_header: str
    summary: str
    fields: tuple[FieldDoc, ...]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        return _model_of(item)
    return None


def type_name(annotation: Any) -> str:
    """A type as an operator reads it: ``integer``, ``path or none``, ``one of: cpu, cuda``."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(annotation)
        names = [type_name(a) for a in args if a is not type(None)]
        text = " or ".join(names)
        return f"{text} or none" if type(None) in args else text
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        model = _model_of(item)
        if model is not None:
            return f"list of {model.__name__} tables"
        return f"list of {type_name(item)}"
    if origin is dict:
        return "table"
    if inspect.isclass(annotation):
        if issubclass(annotation, BaseModel):
            return "table"
        if issubclass(annotation, enum.Enum):
            return "one of: " + ", ".join(str(m.value) for m in annotation)
        simple = {
            bool: "boolean",
            int: "integer",
            float: "number",
            str: "string",
            Path: "path",
            SecretStr: "secret string",
        }
        for cls, name in simple.items():
            if issubclass(annotation, cls):
                return name
        return annotation.__name__
    return str(annotation)


def _constraints(info: FieldInfo) -> str:
    words = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            words.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length} long")
        elif isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} long")
        elif getattr(item, "pattern", None):
            words.append(f"matches {item.pattern}")
    return ", ".join(words)


def _format_value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        return f'"{value}"'
    if isinstance(value, bool | int | float | str | list | dict):
        return json.dumps(value)
    return str(value)


def _default(info: FieldInfo) -> str:
    """The default as it would be written in TOML; never anything machine-specific."""
    if info.is_required():
        return "(required)"
    if info.default_factory is not None:
        factory = info.default_factory
        if inspect.isclass(factory) and issubclass(factory, BaseModel):
            return "(table)"
        if factory in (list, dict):
            return _format_value(factory())
        # Computed from the machine (a home directory, say): describe it instead of
        # printing one machine's value into a page that must be the same everywhere.
        doc = inspect.getdoc(factory) or factory.__name__
        return f"computed: {doc.splitlines()[0]}"
    if info.default is PydanticUndefined:
        return "(required)"
    return _format_value(info.default)


def _field_doc(name: str, info: FieldInfo, *, toml_prefix: str, env_prefix: str | None) -> FieldDoc:
    toml_key = f"{toml_prefix}{name}"
    env = f"{env_prefix}{name.upper()}" if env_prefix is not None else None
    return FieldDoc(
        toml_key=toml_key,
        env=env,
        type=type_name(info.annotation),
        default=_default(info),
        constraints=_constraints(info),
        description=" ".join((info.description or "").split()),
        required=info.is_required(),
    )


def _summary(model: type[BaseModel]) -> str:
    """The first paragraph of the class's own docstring (``__doc__`` is not inherited)."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _walk(
    model: type[BaseModel],
    *,
    title: str,
    toml_header: str,
    toml_prefix: str,
    toml_table: str,
    env_prefix: str | None,
) -> Iterator[SectionDoc]:
    """Yield the model's own scalar fields as one section, then each nested table in turn."""
    own: list[FieldDoc] = []
    nested: list[tuple[str, FieldInfo]] = []
    for name, info in model.model_fields.items():
        if _model_of(info.annotation) is not None or _list_item_model(info.annotation):
            nested.append((name, info))
            # a list of tables is also one variable (JSON); list it among the scalars
            if _list_item_model(info.annotation):
                own.append(_field_doc(name, info, toml_prefix=toml_prefix, env_prefix=env_prefix))
            continue
        own.append(_field_doc(name, info, toml_prefix=toml_prefix, env_prefix=env_prefix))
    if own:
        yield SectionDoc(title, toml_header, _summary(model), tuple(own))
    for name, info in nested:
        sub_model = _model_of(info.annotation)
        key = f"{toml_prefix}{name}"
        table = f"{toml_table}.{name}" if toml_table else name
        if sub_model is not None:
            yield from _walk(
                sub_model,
                title=key,
                toml_header=f"[{table}]",
                toml_prefix=f"{key}.",
                toml_table=table,
                env_prefix=(
                    f"{env_prefix}{name.upper()}{ENV_DELIMITER}" if env_prefix is not None else None
                ),
            )
        else:
            item_model = _list_item_model(info.annotation)
            assert item_model is not None
            yield from _walk(
                item_model,
                title=f"{key}[]",
                toml_header=f"[[{table}]]",
                toml_prefix=f"{key}[].",
                toml_table=table,
                env_prefix=None,
            )


def settings_sections(settings_cls: type[BaseModel] = Settings) -> list[SectionDoc]:
    """Every table of the settings, top-level keys first, in declaration order."""
    return list(
        _walk(
            settings_cls,
            title="top level",
            toml_header="",
            toml_prefix="",
            toml_table="",
            env_prefix=ENV_PREFIX,
        )
    )


def environment_variable_names(settings_cls: type[BaseModel] = Settings) -> frozenset[str]:
    """Every UNITUMOUR_* variable the settings read (names are case-insensitive; upper here)."""
    names = {CONFIG_ENV, SECRETS_DIR_ENV}
    for section in settings_sections(settings_cls):
        names.update(f.env for f in section.fields if f.env is not None)
    return frozenset(names)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else ""


def _code(text: str | None) -> str:
    return f"`{text}`" if text else "—"


_INTRO = f"""\
<!-- Generated by `unitumour config reference` from the settings model; do not edit by hand.
     Regenerate with: unitumour config reference > docs/configuration.md -->

# Configuration reference

Every setting of UniTumour DICOM, as the settings model defines it. Settings come from, highest
precedence first:

1. command-line flags and keyword overrides (tests);
2. environment variables `UNITUMOUR_<SECTION>__<FIELD>` (double underscore between levels;
   names are case-insensitive);
3. files in the folder named by `UNITUMOUR_SECRETS_DIR`, one per variable, named as the
   variable and holding its value (a Kubernetes Secret volume, Docker secrets, systemd
   credentials: passwords stay out of the environment);
4. a TOML file named by `--config FILE` / `-c FILE` or the `{CONFIG_ENV}` environment variable
   (a named file that does not exist is an error);
5. the defaults below.

Unknown keys are refused, not ignored: a misspelt section or field stops the process with a
message that names it. `unitumour config show` prints the effective settings with secrets and
URL passwords masked.

Lists (`list of ...`) are written in TOML as arrays, and in the environment as JSON, e.g.
`UNITUMOUR_DELIVERY__ALWAYS_TO='["ARCHIVE"]'`. A list of tables (callers, destinations) is
written in TOML as an array of tables (`[[listener.callers]]`) and in the environment only
whole, as a JSON array of objects in the list's own variable; its fields have no variable of
their own (shown as —).

Settings are read once when a process starts; a change takes effect at the next restart.
"""


def _default_cell(default: str) -> str:
    # literal values in code type; "(required)", "(table)", "computed: ..." are prose
    return default if default.startswith(("(", "computed")) else _code(default)


def render_markdown(settings_cls: type[BaseModel] = Settings) -> str:
    """The whole reference page, deterministic: the same text on every machine."""
    out = [_INTRO]
    for section in settings_sections(settings_cls):
        heading = f"`{section.toml_header}`" if section.toml_header else "Top level"
        out.append(f"\n## {heading}\n")
        if section.summary:
            out.append(f"\n{section.summary}\n")
        out.append(
            "\n| TOML key | Environment variable | Type | Default | Limits | Description |\n"
            "| --- | --- | --- | --- | --- | --- |\n"
        )
        for f in section.fields:
            out.append(
                f"| `{f.toml_key}` | {_code(f.env)} | {_cell(f.type)} | "
                f"{_cell(_default_cell(f.default))} | "
                f"{_cell(f.constraints)} | {_cell(f.description)} |\n"
            )
    return "".join(out)
