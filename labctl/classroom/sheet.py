"""What the trainer hands out: one card per seat, and the trainer's overview of the class.

Pure: cards are built from the lab's records and statuses, then rendered to HTML (one card per
half A4 page when printed, the overview on its own page), CSV or Markdown. Trainee names come from a
stranger's lab.yaml: HTML escapes them, CSV neutralises spreadsheet formulas, Markdown escapes its
own syntax.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jinja2

from labctl.passwords import SeatSecrets

SEAT_USER = "stack"


@dataclass(frozen=True)
class Card:
    seat: str
    number: int
    trainee: str
    spare: bool
    ssh_command: str
    login_user: str
    login_password: str
    dashboard: str | None
    keystone: str
    admin_user: str
    admin_password: str
    state: str      # the machine, as libvirt says
    devstack: str   # stacked, failed at ..., "" never ran
    host: str       # the hypervisor host the seat runs on
    seat_address: str


@dataclass(frozen=True)
class Sheet:
    lab: str
    address: str
    cards: tuple[Card, ...]


def card(*, seat: str, number: int, trainee: str | None, spare: bool, address: str, ssh_port: int, web_port: int,
         secrets: SeatSecrets, has_dashboard: bool, state: str, devstack: str, host: str,
         seat_address: str) -> Card:
    base = f"http://{address}:{web_port}"
    return Card(seat=seat, number=number, trainee=trainee or ("spare seat" if spare else ""), spare=spare,
                ssh_command=f"ssh -p {ssh_port} {SEAT_USER}@{address}", login_user=SEAT_USER,
                login_password=secrets.login, dashboard=f"{base}/dashboard" if has_dashboard else None,
                keystone=f"{base}/identity", admin_user="admin", admin_password=secrets.admin, state=state,
                devstack=devstack, host=host, seat_address=seat_address)


# ---------------------------------------------------------------------------------------------
# Renderers


def render(sheet: Sheet, fmt: str) -> str:
    return {"html": render_html, "csv": render_csv, "md": render_markdown}[fmt](sheet)


def render_html(sheet: Sheet) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             loader=jinja2.FileSystemLoader(Path(__file__).parent))
    return env.get_template("sheet.html.j2").render(sheet=sheet)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """A spreadsheet takes a cell starting with = + - @ for a formula: such text gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(sheet: Sheet) -> str:
    out = io.StringIO()
    fields = list(Card.__dataclass_fields__)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for c in sheet.cards:
        writer.writerow([_cell(v) for v in asdict(c).values()])
    return out.getvalue()


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def _md(text: str | None) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text or "")


def render_markdown(sheet: Sheet) -> str:
    lines = [f"# Lab {_md(sheet.lab)}: seats", ""]
    for c in sheet.cards:
        lines += [f"## Seat {c.number}: {_md(c.trainee) or 'unassigned'}", "",
                  f"- Connect: `{c.ssh_command}`", f"- User: `{c.login_user}`, password: `{c.login_password}`",
                  f"- Dashboard: {c.dashboard or 'none (not enabled in this lab)'}",
                  f"- Keystone: {c.keystone}", f"- OpenStack user: `{c.admin_user}`, password: `{c.admin_password}`",
                  ""]
    lines += ["## Trainer's overview", "", "| seat | trainee | machine | DevStack | host | SSH |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {c.seat} | {_md(c.trainee)} | {c.state} | {_md(c.devstack) or 'not stacked'} | {_md(c.host)} |"
              f" `{c.ssh_command}` |" for c in sheet.cards]
    return "\n".join(lines) + "\n"


def sheet_summary(cards: Sequence[Card]) -> str:
    ready = sum(1 for c in cards if c.devstack == "stacked" and c.state == "running")
    return f"{ready} of {len(cards)} seats ready"
