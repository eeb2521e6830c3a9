"""lab.yaml as text -> plain data (dicts, lists, strings, whole numbers, booleans, None).

A strict YAML: duplicate keys are refused, keys must be plain scalars, and a value is taken as the
user wrote it. YAML 1.1, which PyYAML speaks, reads `0755` as 493, `23.10` as 23.1, `NO` as False,
`190:20` as 11420 and `2026-01-01` as a date: here only `true`/`false` are booleans, only decimal
numbers without a leading zero (of at most 18 digits) are whole numbers, `~`/`null`/nothing is
None, and everything else stays the text it is. Text that is not valid Unicode (a lone surrogate,
from a "\\ud800" escape) is refused: it could not be written back to a file.
"""

from __future__ import annotations

import difflib
import re

import yaml

from labctl.errors import LabFileError, show
from labctl.raw import Raw, RawMap


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with labctl's resolver (below) and no duplicate or complex keys."""


# A resolver of our own: PyYAML's implicit resolvers are class-level, keyed by first character.
_StrictLoader.yaml_implicit_resolvers = {}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]{0,17}))$"),
                                    list("-+0123456789"))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                                    ["~", "n", "N", ""])


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Raw, Raw]:
    seen: set[Raw] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain name, not a list or mapping",
                                                    key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {show(key)}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_text(data: object, where: str) -> None:
    """Every string valid Unicode. Aliases share their objects: each is visited once, so an alias
    bomb costs no more than its text."""
    seen: set[int] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise LabFileError(f"{where}: {show(item)} holds a character that is not valid Unicode text (a lone"
                                   " surrogate)", hint="write the character itself, or leave it out") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


Positions = dict[tuple[int | str, ...], tuple[int, int]]
_MAX_POSITIONS = 100_000


def _positions(node: yaml.Node | None) -> Positions:
    """Where each field starts (1-based line and column): a mapping's entry at its key, a list's item
    at the item. A node reached twice (an alias) is walked once, and at most _MAX_POSITIONS are kept."""
    found: Positions = {}
    seen: set[int] = set()
    stack: list[tuple[tuple[int | str, ...], yaml.Node]] = [((), node)] if node is not None else []
    found[()] = (1, 1)
    while stack and len(found) < _MAX_POSITIONS:
        path, current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    here = (*path, key.value)
                    found.setdefault(here, (key.start_mark.line + 1, key.start_mark.column + 1))
                    stack.append((here, value))
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                here = (*path, i)
                found.setdefault(here, (item.start_mark.line + 1, item.start_mark.column + 1))
                stack.append((here, item))
    return found


def parse_yaml(text: str, where: str) -> Raw:
    return parse_yaml_positions(text, where)[0]


def parse_yaml_positions(text: str, where: str) -> tuple[Raw, Positions]:
    """The data, and where each of its fields is in the text (for errors that give a line)."""
    loader = None
    try:
        loader = _StrictLoader(text)  # it reads the text at once: a NUL is refused here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise LabFileError(f"{where}:{line}: {exc.problem or exc.context}",
                           hint="fix the YAML syntax at that line") from None
    except yaml.YAMLError as exc:
        raise LabFileError(f"{where}: not valid YAML ({exc})") from None
    except RecursionError:
        raise LabFileError(f"{where}: nested too deeply", hint="a lab file is a few levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    _check_text(data, where)
    return data, _positions(node)


# ---------------------------------------------------------------------------------------------
# Shapes every section of lab.yaml checks, with the field path in each error


def mapping(value: object, path: str, allowed: tuple[str, ...] | None = None) -> RawMap:
    """A mapping with text keys (None is empty), only `allowed` ones when given."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LabFileError(f"{path or 'lab.yaml'}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise LabFileError(f"{path or 'lab.yaml'}: keys must be text, got {show(key)}")
        if allowed is not None and key not in allowed:
            message, hint = unknown_key(key, allowed)
            raise LabFileError(f"{path}.{key}: {message}" if path else f"{key}: {message}", hint=hint or None)
    return value


def unknown_key(key: object, allowed: tuple[str, ...]) -> tuple[str, str]:
    """The message and hint for a key a section does not have, with the one it most likely meant."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6) if isinstance(key, str) else []
    if close:
        return f"unknown key; did you mean {close[0]}?", f"the keys here: {', '.join(allowed)}"
    return f"unknown key; expected one of: {', '.join(allowed)}", ""


def listed(value: object, path: str, limit: int | None = None) -> list[Raw]:
    """A list (None is empty), of at most `limit` entries when given."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise LabFileError(f"{path}: expected a list, got {type(value).__name__}")
    if limit is not None and len(value) > limit:
        raise LabFileError(f"{path}: at most {limit} entries, got {len(value)}")
    return value
