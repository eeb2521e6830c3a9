"""lab.yaml's shape errors in labctl's words: each with its field path (machines[1].memory), every
one of a file at once, a did-you-mean for a misspelt key, and the field a parser's error names (for
its line in the file)."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from labctl.errors import show
from labctl.labfile.shape import LabShape, MachineShape, keys
from labctl.labyaml import unknown_key

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Problem:
    loc: Loc
    message: str
    hint: str = ""

    @property
    def path(self) -> str:
        return field_path(self.loc)


def field_path(loc: Loc) -> str:
    """('machines', 1, 'memory') -> machines[1].memory, as every labctl error names a field."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{show(part)}]"
    return out


def _section(loc: Loc) -> type[BaseModel] | None:
    """The shape a location's last key belongs to (to name the keys it could have meant)."""
    current: object = LabShape
    for part in loc[:-1]:
        while True:  # X | None, list[X], dict[str, X] -> X
            args = [a for a in typing.get_args(current) if a is not type(None)]
            origin = typing.get_origin(current)
            if origin is Annotated or not args:
                break
            current = args[-1] if origin is dict else args[0]
        if isinstance(current, type) and issubclass(current, BaseModel):
            if isinstance(part, str):
                field = current.model_fields.get(part)
                current = field.annotation if field else None
        elif not isinstance(part, int) and typing.get_origin(current) is not dict:
            return None
    while typing.get_origin(current) is not None and typing.get_origin(current) is not Annotated:
        current = [a for a in typing.get_args(current) if a is not type(None)][-1]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


_MISSING: dict[tuple[type[BaseModel] | None, int | str], tuple[str, str]] = {
    (LabShape, "name"): ("a lab needs a name", "add `name: mylab` at the top of lab.yaml"),
    (MachineShape, "name"): ("every machine needs a name", "add `name: NAME` to it"),
}


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _problem(error: ErrorDetails) -> Problem:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    if kind == "labctl":
        context = error.get("ctx") or {}
        return Problem(loc, context.get("message", error["msg"]), context.get("hint", ""))
    if kind == "extra_forbidden":
        section = _section(loc)
        message, hint = unknown_key(loc[-1], keys(section) if section else ())
        return Problem(loc, message, hint)
    if kind == "missing":
        message, hint = _MISSING.get((_section(loc), loc[-1]), ("missing; this key is needed here", ""))
        return Problem(loc, message, hint or f"add `{loc[-1]}: ...` there")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return Problem(loc, f"expected a mapping, got {_kind(value)}")
    if kind == "list_type":
        return Problem(loc, f"expected a list, got {_kind(value)}")
    if kind == "too_long":
        return Problem(loc, f"at most {error.get('ctx', {}).get('max_length')} entries")
    if kind == "string_type" and loc and loc[-1] == "[key]":
        return Problem(loc[:-1], f"keys must be text, got {show(value)}")
    return Problem(loc, error["msg"])


def problems(raw: object) -> list[Problem]:
    """Every shape error of a lab file's content (in the model's order: load_lab puts them in the file's)."""
    try:
        LabShape.model_validate(raw)
    except ValidationError as exc:
        if not isinstance(raw, dict):
            return [Problem((), f"expected a mapping, got {_kind(raw)}", "a lab file starts with `name: mylab`")]
        return [_problem(e) for e in exc.errors(include_url=False)]
    return []


_PART_RE = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[([0-9]+)\]|\[('(?:[^'\\]|\\.)*')\]")


def loc_of(message: str) -> Loc | None:
    """The field a parser's error names first (`machines[1].name: ...` -> ('machines', 1, 'name'))."""
    head, sep, _ = message.partition(": ")
    if not sep:
        return None
    loc: list[int | str] = []
    at = 0
    while at < len(head):
        m = _PART_RE.match(head, at)
        if not m or (m[0].startswith(".") and not loc):
            return None
        loc.append(m[1] if m[1] else int(m[2]) if m[2] else m[3][1:-1])
        at = m.end()
    return tuple(loc) or None
