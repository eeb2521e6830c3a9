"""Errors a user can fix. The CLI prints them as one line plus a hint; nothing else catches them."""

from __future__ import annotations

import re
import reprlib

_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxtuple = 2, 4, 4, 4
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_MESSAGE = 600


def show(value: object) -> str:
    """A value from a lab file, for an error message: quoted, control characters escaped, and short
    (a YAML alias bomb or a megabyte string must not become the message)."""
    return _SHOW.repr(value)


def printable(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message as it may reach a terminal: no escape sequences (a name from a stranger's lab may
    hold some), and at most `limit` characters."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= limit else text[:limit] + "..."


class LabctlError(Exception):
    """A failure the user can act on. `hint` says what to run or change."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # More lines under the message: each of several problems found at once (lab.yaml's).
        self.details = details


class LabFileError(LabctlError):
    """lab.yaml (or a flag standing for it) is malformed; the message names the field path."""


class CatalogError(LabctlError):
    """A distro reference is unknown, or a catalogue file is broken."""


class FragmentError(LabctlError):
    """A local.conf.d fragment is malformed."""


class LabNotFound(LabctlError):
    """No lab matches what the user named, or none could be chosen."""


class LabConflict(LabctlError):
    """An existing lab or file stands where labctl would write."""


class NotEnoughResources(LabctlError):
    """The host (or the hosts together) cannot hold the lab: the message shows the arithmetic."""
