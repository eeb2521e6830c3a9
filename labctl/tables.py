"""Tables that fit the terminal: what matters stays whole (a seat's name, an address), the less useful
columns go first when the width runs out, and only free text (a trainee's name, a phase) may fold.
rich alone would cut every column a little (`sea… │ 192.168.11…`): a trainer could no longer tell
seat-01 from seat-14."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# A column's share of the frame: one space of padding each side and the border on its left.
_FRAME = 3
_FOLD_MIN = 10  # a folding column keeps this much before anything is dropped for it


@dataclass(frozen=True)
class Column:
    header: str
    drop: int = 0  # the order in which columns go when the width runs out (1 first); 0: never
    fold: bool = False  # free text that may wrap onto more lines (never cut)


def _width(cell: str) -> int:
    from rich.text import Text

    return max((Text.from_markup(line).cell_len for line in cell.split("\n")), default=0)


def fitted(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """The indexes of the columns kept at `width`: all when they fit, else without the columns
    dropped first, until the rest fits (a folding column counted at _FOLD_MIN)."""
    natural = [max([_width(c.header), *(_width(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    kept = list(range(len(columns)))

    def need(indexes: list[int]) -> int:
        return 1 + sum(min(natural[i], _FOLD_MIN) if columns[i].fold else natural[i] for i in indexes) + _FRAME * len(
            indexes)

    for i in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: columns[i].drop):
        if need(kept) <= width:
            break
        kept.remove(i)
    return kept


def table(console: Console, title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[str]],
          section: Sequence[Sequence[str]] = ()) -> Table:
    """A rich table of the columns that fit the console's width; `section`: rows after a rule (totals)."""
    from rich.table import Table

    kept = fitted(columns, [*rows, *section], console.width)
    out = Table(title=title, title_justify="left")
    for i in kept:
        c = columns[i]
        out.add_column(c.header, no_wrap=not c.fold, overflow="fold")
    for row in rows:
        out.add_row(*(row[i] for i in kept))
    if section:
        out.add_section()
        for row in section:
            out.add_row(*(row[i] for i in kept), style="bold")
    return out
