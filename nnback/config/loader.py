"""Read an experiment file, apply ``--set`` overrides and validate it.

Every problem is reported in one ``ConfigError``, one line each, in the form
``cfg.yaml: optimizer.lr: must be greater than 0 (got -0.1)``.
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from nnback.config.data_schema import DATA_VARIANTS
from nnback.config.schema import Experiment
from nnback.errors import ConfigError
from nnback.spec import BOUNDS, number
from nnback.untrusted import read_limited

MAX_FILE_BYTES = 1 << 20  # an experiment file is a few kilobytes
MAX_NODES = 20_000  # values in the document once every alias is expanded (a config has hundreds)
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_INT_CHARS = 100  # characters of one integer


def read_yaml(path: str | Path) -> dict:
    """Parse an experiment file with a safe loader (plain data only, no Python tags) that
    also rejects duplicate keys; the top level must be a mapping.

    Hostile documents end with a ConfigError before they can exhaust time or memory:
    a file over MAX_FILE_BYTES, a FIFO or device, more than MAX_NODES values with
    aliases expanded (the "billion laughs"), an alias inside its own anchor, nesting
    deeper than MAX_DEPTH, an integer longer than MAX_INT_CHARS characters.
    """
    path = Path(path)
    data = read_limited(path, str(path), MAX_FILE_BYTES, "an experiment file", ConfigError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_error(exc)}") from None
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(f"{path}: the file must be a YAML mapping of sections, but it is {kind}")
    return raw


def read_saved_config(path: str | Path) -> dict:
    """A run folder's config.yaml as today's schema resolves it, so that options added
    since it was written count with their defaults (and ``weight_decay: null``, as adam
    was once saved, as adam's 0); as written if it no longer validates."""
    saved = read_yaml(path)
    try:
        return Experiment.model_validate(saved, context=SAVED).model_dump(mode="json")
    except ValidationError:
        return saved


def parse_yaml(text: str):
    """One YAML document of plain data, with the bounds of ``read_yaml``.

    Raises:
        yaml.YAMLError: invalid YAML, a duplicate key or a bound exceeded.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key written twice in one mapping (YAML would
    silently keep the last one) and documents whose size or nesting is out of bounds.

    While composing, every node is counted with each alias counted as the whole node it
    names, so the total is the size of the fully expanded document; it is checked as it
    grows, before anything is constructed.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._expanded = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id of a composed node -> its expanded size

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise yaml.composer.ComposerError(
                    None, None, "an alias inside its own anchor (a recursive structure)", mark)
            self._grow(self._sizes[id(node)], mark)
            return node
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        before = self._expanded
        self._grow(1, mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._expanded - before
        return node

    def _grow(self, count: int, mark) -> None:
        self._expanded += count
        if self._expanded > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} values with aliases expanded", mark)

    def construct_object(self, node, deep=False):
        """PyYAML's construction, with the errors its constructors raise for a value that
        does not fit an explicit tag (``!!int abc``, ``!!float ''``, ``!!bool x``) as
        one ConstructorError at the value."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, IndexError, KeyError, AttributeError, TypeError, OverflowError):
            raise yaml.constructor.ConstructorError(
                None, None, f"{str(node.value)[:40]!r} is not a valid {node.tag.rsplit(':', 1)[-1]}",
                node.start_mark) from None

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_INT_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(node.value)} characters (at most {MAX_INT_CHARS})",
                node.start_mark)
        return super().construct_yaml_int(node)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # refused by PyYAML's own check
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in the same mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"YAML syntax error: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {problem}"


def apply_overrides(raw: dict, overrides: typing.Iterable[str]) -> dict:
    """Set dotted keys, ``optimizer.lr=0.01`` or ``model.layers.0.units=64``, in a copy
    (``raw`` itself is returned when there are no overrides).

    Values are parsed as YAML scalars (or flow collections), so ``5`` is an int,
    ``1e-3`` a float, ``true`` a bool and ``[64, 32]`` a list.
    """
    overrides = list(overrides)
    if not overrides:
        return raw
    raw = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01")
        try:
            value = parse_yaml(text)
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
            if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
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
                    following = parts[depth + 1]
                    if following.isascii() and following.isdigit():
                        raise ConfigError(f"--set {item}: {where}: not a list in the config, "
                                          f"so it has no item {following}")
                    child = node[part] = {}
                node = child
        else:
            raise ConfigError(f"--set {item}: {'.'.join(parts[:depth])} is {_got(node)}, "
                              f"not a mapping or list")


# Validation context of a config whose run folder is not named after the experiment: a
# saved run's config, or one trained with --out. Its name is a label, as an earlier
# version may have written it (with a space, say), not a folder name.
SAVED = {"names_folder": False}


def validate(raw: dict, source: str, names_folder: bool = True) -> Experiment:
    """Validate a parsed experiment; all problems are raised together as one ConfigError.

    ``names_folder``: a new run folder will be named after the experiment, so the name
    must be one plain folder name.
    """
    try:
        return Experiment.model_validate(raw, context=None if names_folder else SAVED)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, raw, source)) from None


def load_config(path: str | Path, overrides: typing.Iterable[str] = (),
                names_folder: bool = True) -> Experiment:
    """Read, override and validate an experiment file (``names_folder`` as for ``validate``)."""
    raw = apply_overrides(read_yaml(path), overrides)
    return validate(raw, str(path), names_folder)


# --- error messages ----------------------------------------------------------------


def format_errors(exc: ValidationError, raw: dict, source: str) -> list[str]:
    """One line per distinct key path, ``source: path: message``.

    A missing key that an unknown key beside it misspells (``optimzer``) is reported
    once, as the unknown key with its suggestion. Keys of another variant of a section
    whose tag is wrong (``classes`` under ``data.source: spirall``) are left to the
    tag's own error.
    """
    problems = [_problem(error, raw) for error in exc.errors()]
    paths = {tuple(p.path) for p in problems}
    misspelt = {(tuple(p.path[:-1]), p.meant) for p in problems if p.meant}
    lines, seen = [], set()
    for p in problems:
        key = tuple(p.path)
        if (key in seen or (p.message == MISSING and (key[:-1], key[-1]) in misspelt)
                or (p.other_variant and {key[:-1] + ("type",), key[:-1] + ("source",)} & paths)):
            continue
        seen.add(key)
        where = _dotted(p.path)
        lines.append(f"{source}: {where}: {p.message}" if where else f"{source}: {p.message}")
    return lines


MISSING = "required key is missing"
# A check's message that starts with the key it is about: "units: must be positive".
_KEY_PREFIX = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*): (.+)", re.DOTALL)


class _Problem(typing.NamedTuple):
    path: list
    message: str
    meant: str | None = None  # the valid key an unknown key probably misspells
    other_variant: bool = False  # an unknown key that another variant of its section has


def _problem(error: dict, raw: dict) -> _Problem:
    """The key path and message of one pydantic error."""
    kind = error["type"]
    path, variant = _clean_path(error["loc"], raw, kind in ("missing", "extra_forbidden"))
    if kind == "extra_forbidden":
        valid = _valid_keys(path[:-1], raw, variant)
        given = str(path[-1])
        meant = _closest(given, valid)
        if meant:
            message = f"unknown key {given!r} (did you mean {meant!r}?)"
        else:
            message = f"unknown key {given!r}; valid keys: {', '.join(sorted(valid))}"
        return _Problem(path, message, meant, given in _valid_keys(path[:-1], raw))
    if kind == "value_error":
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        match = _KEY_PREFIX.fullmatch(message)
        if match:
            parts = [int(p[1:-1]) if p[0] == "[" else p for p in re.findall(r"\[\d+\]|\w+", match[1])]
            if parts[0] in _valid_keys(path, raw, variant):
                return _Problem(path + parts, match[2])
        return _Problem(path, message)
    if kind == "missing" and isinstance(error["loc"][-1], int):  # a list shorter than a tuple
        return _Problem(path, f"has too few items (got {_got(_node_at(path, raw))})")
    if kind == "union_tag_invalid" and isinstance(_node_at(path, raw), dict):
        path = path + ["type"]
    return _Problem(path, _message(error))


def _clean_path(loc, raw, names_key: bool) -> tuple[list, str | None]:
    """Drop the union tags and member names pydantic adds to ``loc``.

    ``names_key``: the error is about a key itself (missing or unknown), so a last
    part absent from the data is kept.

    Returns:
        (the key path in the data, the last dropped tag: the variant of the innermost
        tagged section, e.g. ``"sgd"`` or ``"file"``, or None).
    """
    path, node, variant = [], raw, None
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict):
            if part in node:
                path.append(part)
                node = node[part]
            elif last and names_key:
                path.append(part)
            else:
                variant = part
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        else:
            variant = part
    return path, variant


def _dotted(path: list) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _got(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _message(error: dict) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "missing":
        return MISSING
    bounds = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
    if kind in bounds:
        key = bounds[kind]
        return f"must be {BOUNDS[key]} {number(ctx[key])} (got {_got(value)})"
    if kind in ("union_tag_invalid", "literal_error"):
        choices = _choices(ctx.get("expected_tags") or ctx.get("expected", ""))
        given = ctx.get("tag", value)
        meant = _closest(str(given), choices)
        hint = f" (did you mean {meant!r}?)" if meant else ""
        return f"unknown value {_got(given)}{hint}; choose from {', '.join(choices)}"
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
    if kind in ("too_short", "too_long"):
        bound, count = (("at least", ctx["min_length"]) if kind == "too_short"
                        else ("at most", ctx["max_length"]))
        return f"must have {bound} {count} item{'s' * (count != 1)} (got {_got(value)})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("string_type",):
        return f"must be a string (got {_got(value)})"
    return error["msg"][:1].lower() + error["msg"][1:]


def _choices(expected: str) -> list[str]:
    return [part.strip(" '\"") for part in expected.replace(" or ", ",").split(",") if part.strip(" '\"")]


def _closest(given: str, valid) -> str | None:
    close = difflib.get_close_matches(given, list(valid), n=1, cutoff=0.6)
    return close[0] if close else None


def _node_at(path: list, raw: dict):
    node = raw
    for part in path:
        node = node[part]
    return node


def _valid_keys(path: list, raw: dict, variant: str | None = None) -> set[str]:
    """The field names of the section at ``path``, found by walking the schema.

    ``variant``: the tag pydantic chose for that section (from the error location);
    otherwise the section's own ``type``/``source`` picks it, if it names one.
    """
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
    fitting = ([m for m in models if variant in _tags_of(m) or DATA_VARIANTS.get(variant) is m]
               or [m for m in models if tag in _tags_of(m)] or models)
    return {name for model in fitting for name in model.model_fields}


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _tags_of(model: type[BaseModel]) -> tuple:
    """The literal values of a variant's tag field (``type``, or ``source`` for data)."""
    field = model.model_fields.get("type") or model.model_fields.get("source")
    return typing.get_args(field.annotation) if field is not None else ()
