"""The connection to one libvirt host, and libvirt's errors turned into labctl's."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any, Self, TypeVar

import libvirt

from labctl.errors import LabctlError
from labctl.host import default_uri, start_hint


class LibvirtUnavailable(LabctlError):
    """libvirtd cannot be reached, or the user may not talk to it."""


class LibvirtFailed(LabctlError):
    """libvirt failed in the middle of a command (libvirtd gone, a domain removed under labctl)."""

    exit_code = 1


def _ignore_errors(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; labctl reports them itself."""


def connect(uri: str | None = None) -> libvirt.virConnect:
    uri = uri or default_uri()
    libvirt.registerErrorHandler(_ignore_errors, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        text = str(exc)
        if "ermission denied" in text or "uthentication" in text:
            user = os.environ.get("USER", "$USER")
            raise LibvirtUnavailable(
                f"you may not talk to libvirt at {uri}: {text}",
                hint=f"sudo usermod -aG libvirt {user}, then log out and in again (or: newgrp libvirt)",
            ) from None
        raise LibvirtUnavailable(f"libvirt is not reachable at {uri}: {text}", hint=start_hint()) from None


def is_local(uri: str) -> bool:
    """A URI of this machine's libvirt (no host part): qemu:///system, test:///default."""
    return "://" in uri and uri.split("://", 1)[1].startswith("/")


F = TypeVar("F", bound=Callable[..., Any])


def as_labctl_error(exc: BaseException) -> LibvirtFailed | None:
    """libvirt's own error as labctl's, with how to start libvirtd (None for any other exception)."""
    if not isinstance(exc, libvirt.libvirtError):
        return None
    return LibvirtFailed(f"libvirt failed during the command: {exc}",
                         hint=f"is libvirtd still running? {start_hint()}; then run the command again")


def libvirt_errors(method: F) -> F:
    """libvirt's errors leave the adapter as labctl's, with how to start libvirtd."""
    @functools.wraps(method)
    def call(self: Connected, *args: object, **kwargs: object) -> object:
        try:
            return method(self, *args, **kwargs)
        except libvirt.libvirtError as exc:
            failure = as_labctl_error(exc)
            assert failure is not None
            raise failure from None
    return call  # type: ignore[return-value]


class Connected:
    """One libvirt host by its URI, owning its connection: the base of every part of the Hypervisor."""

    def __init__(self, uri: str | None = None, conn: libvirt.virConnect | None = None) -> None:
        self.uri = uri or default_uri()
        self._conn = conn

    @classmethod
    def open(cls, uri: str | None = None) -> Self:
        """Connected now: a command that needs libvirt says so before it does anything."""
        hypervisor = cls(uri)
        hypervisor.conn  # noqa: B018 - the connection is made by the property
        return hypervisor

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            self._conn = connect(self.uri)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _lookup(self, name: str) -> libvirt.virDomain | None:
        """The domain, or None if there is none by that name. Any other failure of libvirt (a daemon
        gone mid-command) is raised, never taken for "no such machine"."""
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _domain(self, name: str) -> libvirt.virDomain:
        dom = self._lookup(name)
        if dom is None:
            raise LabctlError(f"libvirt has no domain {name}", hint="labctl status shows the lab's machines;"
                              " labctl up makes the missing ones")
        return dom
