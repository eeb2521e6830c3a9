"""Errors a user can fix. The CLI prints them as one line plus a hint; nothing else catches them."""

from __future__ import annotations


class LabctlError(Exception):
    """A failure the user can act on. `hint` says what to run or change."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


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
