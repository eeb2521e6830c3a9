"""What a file gives before it is validated: YAML or JSON of any shape. Only readers hold it, and they
turn it into typed values (labfile/, records.py, passwords, the classroom and cloud sections) or into
a clear error; no use-case is handed a Raw value."""

from __future__ import annotations

from typing import Any, TypeAlias

Raw: TypeAlias = Any  # the one bare Any of labctl's own values: a test counts them
RawMap: TypeAlias = dict[str, Raw]
