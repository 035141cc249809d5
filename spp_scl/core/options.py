"""Command-line options generated from typed dataclasses: the one place that turns text into a config value.

Every option of `spp-scl extract` comes from `spp_scl.extract.config.ExtractConfig`, and every config field of the
commands that train (`train --FIELD`, `sweep --set/--axis`, `tables --set`, `compare --set`) from
`spp_scl.heads.config.SPPSCLConfig`, through `parse_field_value`, so a field takes the same text everywhere:

    bool                 true / false (also 1/0, yes/no, on/off); a bare `--flag` means true, `--no-flag` false
    int, float, str      as Python reads them
    Literal[...]         one of the choices
    X | None             `none` (or `null`) for None, else an X
    tuple[float, float]  0.9,0.999  (or (0.9,0.999); in a sweep axis the parentheses separate the values)
    list[int], list[str] comma-separated
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
NONE_WORDS = ("none", "null")
ALIASES = {"tau": "temperature", "lambda": "ce_weight"}  # the paper's names of two fields


def field_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _non_none(hint):
    """(the type without None, whether None is allowed)."""
    if _is_union(hint):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no command-line form for the union {hint!r}")
        return args[0], type(None) in typing.get_args(hint)
    return hint, False


def parse_typed(hint, text: str, name: str) -> Any:
    """Text -> a value of type `hint`; a ValueError names the field and what it expects."""
    text = text.strip()
    base, nullable = _non_none(hint)
    if nullable and text.lower() in NONE_WORDS:
        return None
    origin = typing.get_origin(base)
    if base is bool:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ValueError(f"{name}: expected true or false, got {text!r}")
    if origin is Literal:
        choices = typing.get_args(base)
        if text not in choices:
            raise ValueError(f"{name}: expected one of {', '.join(map(str, choices))}, got {text!r}")
        return text
    if origin in (tuple, list):
        inner = text[1:-1] if text[:1] in "([" and text[-1:] in ")]" else text
        parts = [part for part in inner.split(",") if part.strip()]
        args = typing.get_args(base)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(parts) != len(args):
                raise ValueError(f"{name}: expected {len(args)} comma-separated values, got {text!r}")
            return tuple(parse_typed(arg, part, name) for arg, part in zip(args, parts))
        element = args[0] if args else str
        values = [parse_typed(element, part, name) for part in parts]
        return tuple(values) if origin is tuple else values
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise ValueError(f"{name}: expected {'an integer' if base is int else 'a number'}, got {text!r}") from None
    if base is str:
        return text
    raise TypeError(f"{name}: no command-line form for type {hint!r}")


def did_you_mean(word: str, choices) -> str:
    """The hint for a mistyped `word`: "; did you mean 'x'?" for the closest choice (difflib), else "" (none close)."""
    close = difflib.get_close_matches(word, [str(choice) for choice in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def canonical_field(cls, name: str) -> str:
    """'tau' -> 'temperature', 'batch-size' -> 'batch_size'; an unknown name is a ValueError naming the closest
    field ("unknown field 'epoch'; did you mean 'epochs'?"), or listing them all when none is close."""
    given = name.strip()
    name = ALIASES.get(given, given).replace("-", "_")
    known = [f.name for f in dataclasses.fields(cls)]
    if name not in known:
        hint = did_you_mean(name, [*known, *ALIASES]) or f"; fields: {', '.join(known)}"
        raise ValueError(f"unknown field {given!r}{hint}")
    return name


def parse_field_value(cls, name: str, text: str) -> Any:
    """The value of field `name` of dataclass `cls` written as `text` (see the module docstring)."""
    name = canonical_field(cls, name)
    return parse_typed(field_hints(cls)[name], text, name)


def split_values(text: str) -> list[str]:
    """'0.05,0.07' -> ['0.05', '0.07']; '(0.9,0.99),(0.9,0.999)' -> ['(0.9,0.99)', '(0.9,0.999)']: commas inside
    brackets belong to one value, so that a sweep axis can hold tuples."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "(["
        depth -= char in ")]"
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [value.strip() for value in values if value.strip()]


def parse_field_values(cls, name: str, text: str) -> list:
    """A sweep axis: several values of one field (tuples written in brackets)."""
    name = canonical_field(cls, name)
    hint = field_hints(cls)[name]
    base, _ = _non_none(hint)
    if typing.get_origin(base) in (tuple, list) and not text.strip().startswith(("(", "[")):
        raise ValueError(f"{name}: write each value of a sweep axis in brackets, e.g. {name}=(0.9,0.99),(0.9,0.999)")
    return [parse_typed(hint, value, name) for value in split_values(text)]


def metavar(hint) -> str:
    base, nullable = _non_none(hint)
    origin = typing.get_origin(base)
    if origin is Literal:
        text = "{" + ",".join(map(str, typing.get_args(base))) + "}"
    elif origin is tuple and typing.get_args(base)[-1] is Ellipsis:
        text = f"{typing.get_args(base)[0].__name__.upper()},..."
    elif origin is tuple:
        text = ",".join(getattr(arg, "__name__", "X").upper() for arg in typing.get_args(base))
    elif origin is list:
        text = f"{getattr(typing.get_args(base)[0], '__name__', 'X').upper()},..."
    else:
        text = getattr(base, "__name__", "VALUE").upper()
    return text + ("|none" if nullable else "")


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if isinstance(value, (tuple, list)):
        value = ",".join(map(str, value))
    return f"default {'none' if value is None else value}"


def add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls,
    *,
    skip: tuple[str, ...] = (),
    groups: dict[str, str] | None = None,
    group_title: str | None = None,
    suppress_defaults: bool = False,
    default_note: str = "",
) -> None:
    """One `--field-name` option per field of `cls` (with `--no-field-name` for booleans).

    `groups` maps a field's `metadata["group"]` to an argparse group title; otherwise every option goes into one
    group titled `group_title` (or the parser itself). With `suppress_defaults`, an option not given is absent
    from the parsed namespace, so a caller can tell the user's values from the defaults (presets sit between).
    """
    hints = field_hints(cls)
    containers: dict[str, Any] = {}

    def container(field):
        key = field.metadata.get("group", "") if groups else ""
        if key not in containers:
            title = groups.get(key, key) if groups else group_title
            containers[key] = parser.add_argument_group(title) if title else parser
        return containers[key]

    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        hint, flag = hints[field.name], "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} ({_default_text(field)}{default_note})"
        convert = _converter(hint, field.name)
        common = {"dest": field.name, "help": help_text}
        if suppress_defaults:
            common["default"] = argparse.SUPPRESS
        elif field.default_factory is not dataclasses.MISSING:
            common["default"] = field.default_factory()
        elif field.default is not dataclasses.MISSING:
            common["default"] = field.default
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        target = container(field)
        if hint is bool:
            target.add_argument(flag, nargs="?", const=True, type=convert, metavar="BOOL", **common)
            negative = {"dest": field.name, "help": argparse.SUPPRESS}
            if suppress_defaults:
                negative["default"] = argparse.SUPPRESS
            target.add_argument("--no-" + flag[2:], action="store_false", **negative)
        else:
            target.add_argument(flag, type=convert, metavar=metavar(hint), required=required, **common)


def _converter(hint, name: str):
    def convert(text: str):
        try:
            return parse_typed(hint, text, name)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).split(": ", 1)[-1]) from None

    convert.__name__ = metavar(hint)  # argparse names the type in its "invalid ... value" message
    return convert


def dataclass_values(namespace: argparse.Namespace, cls) -> dict[str, Any]:
    """The fields of `cls` present in a parsed namespace."""
    names = {field.name for field in dataclasses.fields(cls)}
    return {key: value for key, value in vars(namespace).items() if key in names}
