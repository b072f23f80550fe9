"""Read an experiment file, apply ``--set`` overrides and validate it.

Every problem is reported in one ``ConfigError``, one line each, in the form
``cfg.yaml: optimizer.lr: must be greater than 0 (got -0.1)``.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from nnback.config.schema import Experiment
from nnback.errors import ConfigError


def read_yaml(path: str | Path) -> dict:
    """Parse an experiment file with ``yaml.safe_load``; the top level must be a mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_error(exc)}") from None
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(f"{path}: the file must be a YAML mapping of sections, but it is {kind}")
    return raw


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"YAML syntax error: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {problem}"


def apply_overrides(raw: dict, overrides: typing.Iterable[str]) -> dict:
    """Set dotted keys, ``optimizer.lr=0.01`` or ``model.layers.0.units=64``, in a copy.

    Values are parsed as YAML scalars (or flow collections), so ``5`` is an int,
    ``1e-3`` a float, ``true`` a bool and ``[64, 32]`` a list.
    """
    raw = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {text!r}: {_yaml_error(exc)}") from None
        _set_path(raw, key.split("."), value, item)
    return raw


def _deep_copy(node):
    if isinstance(node, dict):
        return {k: _deep_copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_deep_copy(v) for v in node]
    return node


def _set_path(node, parts: list[str], value, item: str) -> None:
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {item}: {where}: no list item {part} (the list has {len(node)})")
            index = int(part)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if isinstance(child, str) and part in ("loss", "optimizer", "schedule"):
                    child = node[part] = {"type": child}
                if not isinstance(child, (dict, list)):
                    child = node[part] = {}
                node = child
        else:
            raise ConfigError(f"--set {item}: {where}: cannot set a key inside a {type(node).__name__}")


def validate(raw: dict, source: str) -> Experiment:
    """Validate a parsed experiment; all problems are raised together as one ConfigError."""
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, raw, source)) from None


def load_config(path: str | Path, overrides: typing.Iterable[str] = ()) -> Experiment:
    """Read, override and validate an experiment file."""
    raw = apply_overrides(read_yaml(path), overrides)
    return validate(raw, str(path))


# --- error messages ----------------------------------------------------------------


def format_errors(exc: ValidationError, raw: dict, source: str) -> list[str]:
    """One line per distinct key path, ``source: path: message``."""
    lines, seen = [], set()
    for error in exc.errors():
        path = _clean_path(error["loc"], raw, error["type"] in ("missing", "extra_forbidden"))
        key = tuple(path)
        if key in seen:
            continue
        seen.add(key)
        message = _message(error, path, raw)
        where = _dotted(path)
        lines.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
    return lines


def _clean_path(loc, raw, names_key: bool) -> list:
    """Drop the union tags and member names pydantic adds to ``loc``.

    ``names_key``: the error is about a key itself (missing or unknown), so a last
    part absent from the data is kept.
    """
    path, node = [], raw
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict):
            if part in node:
                path.append(part)
                node = node[part]
            elif last and names_key:
                path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return path


def _dotted(path: list) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _got(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _message(error: dict, path: list, raw: dict) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "extra_forbidden":
        valid = _valid_keys(path[:-1], raw)
        hint = _suggest(str(path[-1]), valid)
        return f"unknown key{hint}" + (f"; valid keys: {', '.join(sorted(valid))}" if valid and not hint else "")
    if kind == "missing":
        return "required key is missing"
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        return f"must be {words} {ctx[name]} (got {_got(value)})"
    if kind in ("union_tag_invalid", "literal_error"):
        choices = _choices(ctx.get("expected_tags") or ctx.get("expected", ""))
        given = ctx.get("tag", value)
        hint = _suggest(str(given), choices)
        key = "type: " if kind == "union_tag_invalid" else ""
        return f"{key}unknown value {_got(given)}{hint}; choose from {', '.join(choices)}"
    if kind == "union_tag_not_found":
        return "missing 'type' (which kind of entry this is)"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be an integer (got {_got(value)})"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"must be a number (got {_got(value)})"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {_got(value)})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys (got {_got(value)})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {_got(value)})"
    if kind in ("string_type",):
        return f"must be a string (got {_got(value)})"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][:1].lower() + error["msg"][1:]


def _choices(expected: str) -> list[str]:
    return [part.strip(" '\"") for part in expected.replace(" or ", ",").split(",") if part.strip(" '\"")]


def _suggest(given: str, valid) -> str:
    close = difflib.get_close_matches(given, list(valid), n=1, cutoff=0.6)
    return f" '{given}' (did you mean '{close[0]}'?)" if close else f" '{given}'"


def _valid_keys(path: list, raw: dict) -> set[str]:
    """The field names of the section at ``path``, found by walking the schema."""
    models: list[type[BaseModel]] = [Experiment]
    node = raw
    for part in path:
        node = node[part] if isinstance(node, (dict, list)) else None
        if isinstance(part, int):
            continue
        nxt = []
        for model in models:
            field = model.model_fields.get(part)
            if field is not None:
                nxt.extend(_models_in(field.annotation))
        models = nxt
    tag = (node.get("type") or node.get("source")) if isinstance(node, dict) else None
    fitting = [m for m in models if tag is None or tag in _tags_of(m)] or models
    return {name for model in fitting for name in model.model_fields}


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _tags_of(model: type[BaseModel]) -> tuple:
    """The literal values of a variant's tag field (``type``, or ``source`` for data)."""
    field = model.model_fields.get("type") or model.model_fields.get("source")
    return typing.get_args(field.annotation) if field is not None else ()
