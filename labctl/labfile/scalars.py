"""The smallest values of lab.yaml: names, sizes, numbers, booleans, one-line texts, distros.

Every error names the field path (`machines[1].memory: ...`), 0-based like JSON paths.
"""

from __future__ import annotations

import re

from labctl.catalog import Catalog, Release
from labctl.errors import CatalogError, LabFileError, show
from labctl.names import NAME_RULE, valid_name


def check_name(value: object, path: str) -> str:
    if not valid_name(value):
        raise LabFileError(f"{path}: invalid name {show(value)}", hint=NAME_RULE)
    assert isinstance(value, str)
    return value


_MEMORY_UNITS = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024}
_DISK_UNITS = {"": 1, "g": 1, "gb": 1, "gib": 1, "t": 1024, "tb": 1024, "tib": 1024}
_SIZE_RE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*\Z", re.ASCII)


def _size(value: object, path: str, units: dict[str, int], unit: str, lo: int, hi: int, examples: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)) and m[2].lower() in units:
        number = int(m[1]) * units[m[2].lower()]
    if number is None:
        raise LabFileError(f"{path}: expected {unit} like {examples}, got {show(value)}",
                           hint=f"a bare number means {unit}; suffixes: {', '.join(sorted(u for u in units if u))}")
    if not lo <= number <= hi:
        raise LabFileError(f"{path}: {number} {unit} is out of range ({lo}-{hi} {unit})")
    return number


def parse_memory(value: object, path: str) -> int:
    """'8G', '8192M', '8192' or 8192 -> MiB."""
    return _size(value, path, _MEMORY_UNITS, "MiB", 512, 1024 * 1024, "8G, 8192M or 8192")


def parse_disk(value: object, path: str) -> int:
    """'40G', '1T' or 40 -> GB."""
    return _size(value, path, _DISK_UNITS, "GB", 5, 64 * 1024, "40G or 40")


def whole_number(value: object, path: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise LabFileError(f"{path}: expected a whole number from {lo} to {hi}, got {show(value)}")
    return value


def true_or_false(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        hint = "lab.yaml reads only true and false as yes/no (YAML 1.1's yes, no, on and off are text)" \
            if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n") else None
        raise LabFileError(f"{path}: expected true or false, got {show(value)}", hint=hint)
    return value


def matching(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise LabFileError(f"{path}: expected {what}, got {show(value)}")
    return value


def certificate_path(value: object, path: str) -> str:
    if not isinstance(value, str) or not value or "\n" in value:
        raise LabFileError(f"{path}: expected the path of a PEM certificate file, got {show(value)}")
    return value


def one_line(value: object, path: str) -> str:
    """A localrc/INI value: one line of text. Numbers and booleans are written as DevStack expects."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        raise LabFileError(f"{path}: expected a value, got nothing", hint="write the value, or '' for an empty one")
    if not isinstance(value, str):
        raise LabFileError(f"{path}: expected a single value, got {type(value).__name__}")
    if any(c in value for c in "\n\r\0"):
        raise LabFileError(f"{path}: value must be a single line (a newline could inject a"
                           " local.conf section)")
    return value


def release_of(catalog: Catalog, value: object, path: str) -> Release:
    try:
        return catalog.resolve(value)
    except CatalogError as exc:
        raise LabFileError(f"{path}: {exc.message}", hint=exc.hint) from None


# ---------------------------------------------------------------------------------------------
