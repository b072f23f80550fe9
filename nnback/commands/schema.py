"""``nnback schema [SECTION]``: the YAML reference, generated from the pydantic models.

Every section of the experiment file (``Experiment`` and the models its fields hold,
walked through ``model_fields``) becomes a table of its keys: type, default, bounds and
description. A field whose type is a union of models (``optimizer``, ``data``, a layer)
gives one section per variant, named after its tag (``optimizer.adam``, ``data.spiral``,
``model.layers.linear``), so nothing here lists a key by hand and the reference cannot
drift from what ``validate`` accepts.
"""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Annotated, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, Tag
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from nnback.errors import NnbackError
from nnback.formatting import format_table

BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", ">="), (at.Lt, "lt", "<"), (at.Le, "le", "<="))


@dataclasses.dataclass
class SchemaSection:
    """One table of the reference.

    Attributes:
        names: what ``nnback schema NAME`` matches: the dotted path, and for a variant
            the path plus each of its tags (``optimizer.adam``, ``optimizer.adamw``).
        title: the heading, e.g. ``optimizer (type: adam, adamw)``.
        description: what the section is for.
        rows: ``[key, type, default, bounds, description]`` per plain key.
    """

    names: list[str]
    title: str
    description: str
    rows: list[list[str]]


def _bounds(metadata) -> str:
    """``>= 0, < 1`` from pydantic's constraint metadata (``Field(ge=0, lt=1)``)."""
    parts = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            parts.append(_bounds(item.metadata))
        parts += [f"{sign} {getattr(item, attr):g}" for cls, attr, sign in BOUNDS if isinstance(item, cls)]
        if isinstance(item, at.MinLen):
            parts.append(f"length >= {item.min_length}")
    return ", ".join(p for p in parts if p)


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _members(annotation) -> list:
    """The alternatives of a union (``X | None`` included), else [annotation]."""
    if get_origin(annotation) in (Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def type_name(annotation) -> str:
    """A YAML-minded name: ``float``, ``int or auto``, ``list of int (> 0)``, ``relu|tanh``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = get_args(annotation)
        bounds = _bounds(metadata)
        return f"{type_name(inner)} ({bounds})" if bounds and not _is_model(inner) else type_name(inner)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        name = " or ".join(type_name(a) for a in members)
        return name + (" or null" if len(members) < len(get_args(annotation)) else "")
    if origin is Literal:
        return "|".join(str(v) for v in get_args(annotation))
    if origin is list:
        return f"list of {type_name(get_args(annotation)[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in get_args(annotation)) + "]"
    if _is_model(annotation):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return getattr(annotation, "__name__", str(annotation))


def _models(annotation) -> list[tuple[str | None, type[BaseModel]]]:
    """The models a field can hold, with their ``Tag`` if the union names one."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = get_args(annotation)
        tags = [m.tag for m in metadata if isinstance(m, Tag)]
        return [(tags[0] if tags else tag, model) for tag, model in _models(inner)]
    if origin in (Union, types.UnionType, list):
        return [found for member in get_args(annotation) for found in _models(member)]
    return [(None, annotation)] if _is_model(annotation) else []


def _only_models(annotation) -> bool:
    """True when every value of the field is a model, a list of models or null: the field
    is a section (or a list of them), not a key."""
    if get_origin(annotation) in (Annotated, list):
        return _only_models(get_args(annotation)[0])
    members = [m for m in _members(annotation) if m is not type(None)]
    if len(members) > 1 or get_origin(members[0]) in (Annotated, list):
        return all(_only_models(m) for m in members)
    return _is_model(members[0])


def _is_list(annotation) -> bool:
    return any(get_origin(m) is list for m in _members(annotation))


def _tag_field(model: type[BaseModel]) -> str | None:
    """The model's own tag (``type``, ``source``): its first required ``Literal`` field."""
    for name, field in model.model_fields.items():
        if get_origin(field.annotation) is Literal and field.is_required():
            return name
    return None


def _tag_values(model: type[BaseModel]) -> list[str]:
    """The values the model's tag field accepts."""
    tag = _tag_field(model)
    return [str(v) for v in get_args(model.model_fields[tag].annotation)] if tag else []


def _yaml(value) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict) and "type" in value:
        return str(value["type"])  # a default variant, e.g. schedule: constant
    if isinstance(value, str):
        return value
    return json.dumps(value)


def default_text(field: FieldInfo) -> str:
    """The default as YAML would spell it, or ``required``."""
    if field.default_factory is not None:
        return _yaml(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    return _yaml(field.default)


def _section_default(field: FieldInfo) -> str:
    """`` (default: null)``, `` (default: constant)`` for a default variant, else `` (optional)``."""
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None or (isinstance(value, BaseModel) and "type" in type(value).model_fields):
        return f" (default: {default_text(field)})"
    return " (optional)"


def _doc(model: type[BaseModel]) -> str:
    """The first paragraph of the model's docstring on one line."""
    return " ".join((model.__doc__ or "").strip().split("\n\n")[0].split()).replace("``", "")


def sections(model: type[BaseModel], path: str = "", title: str = "experiment file",
             description: str = "", names: list[str] | None = None,
             seen: set | None = None) -> list[SchemaSection]:
    """The reference of ``model`` and of every model below it, depth first.

    A model met again at the same path (``data.split`` of every data variant) is listed once.
    """
    seen = set() if seen is None else seen
    if (path, model) in seen:
        return []
    seen.add((path, model))
    own = SchemaSection(names or [path], title, description, [])
    below: list[SchemaSection] = []
    tag = _tag_field(model)
    tag_first = sorted(model.model_fields.items(), key=lambda item: item[0] != tag)
    for name, field in tag_first:
        key = f"{path}.{name}" if path else name
        found = _models(field.annotation)
        if not (found and _only_models(field.annotation)):
            own.rows.append([name, type_name(field.annotation), default_text(field),
                             _bounds(field.metadata), field.description or ""])
        several = len(found) > 1
        listed = "[]" if _is_list(field.annotation) else ""
        optional = "" if field.is_required() or not found else _section_default(field)
        for tag, sub in found:
            tags = [tag] if tag else _tag_values(sub)
            if several:
                label = f"{key}{listed} ({'source' if tag else 'type'}: {', '.join(tags)})"
                text = _doc(sub) or (sub.model_fields[_tag_field(sub)].description if _tag_field(sub) else "")
                below += sections(sub, key, label, text, [key] + [f"{key}.{t}" for t in tags], seen)
            else:
                below += sections(sub, key, key + listed + optional, field.description or _doc(sub),
                                  seen=seen)
    return [own, *below] if own.rows else below


def schema_text(section: str | None = None) -> str:
    """``nnback schema [SECTION]``: the reference of every section, or of the sections
    whose name is ``section`` or starts with ``section.``.

    Raises:
        NnbackError: no section of that name.
    """
    from nnback.config.schema import Experiment

    found = sections(Experiment)
    if section:
        found = [s for s in found if any(n == section or n.startswith(section + ".") for n in s.names)]
        if not found:
            tops = dict.fromkeys(s.names[0].split(".")[0] for s in sections(Experiment) if s.names[0])
            raise NnbackError(f"schema: no section {section!r}; sections: {', '.join(tops)} "
                              f"(or a variant such as optimizer.adam, data.spiral)")
    blocks = []
    for s in found:
        head = f"{s.title}: {s.description}" if s.description else s.title
        blocks.append(head + "\n" + format_table(["  key", "type", "default", "bounds", "description"],
                                                 [["  " + r[0], *r[1:]] for r in s.rows]))
    return "\n\n".join(blocks)
