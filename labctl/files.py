"""Reading the files a lab folder names (lab.yaml, local.conf.d/ fragments, CA certificates): they
come from strangers, so only regular files are read (never a FIFO or /dev/zero, which would block
or never end), and never more than a small bound."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from labctl.errors import LabFileError

LAB_FILE_LIMIT = 1024 * 1024
FRAGMENT_LIMIT = 256 * 1024
CERTIFICATE_LIMIT = 1024 * 1024


def read_bounded(path: Path, limit: int, what: str, encoding: str = "utf-8") -> str:
    """The text of a regular file of at most `limit` bytes; anything else is a LabFileError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LabFileError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise LabFileError(f"{path}: cannot read this {what} ({_reason(exc)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LabFileError(f"{path}: this {what} is not a regular file", hint=f"give the path of a {what} file")
        if info.st_size > limit:
            raise LabFileError(f"{path}: this {what} is {info.st_size} bytes, more than the {limit // 1024} KiB"
                               " labctl reads")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise LabFileError(f"{path}: cannot read this {what} ({_reason(exc)})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LabFileError(f"{path}: this {what} is more than the {limit // 1024} KiB labctl reads")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LabFileError(f"{path}: this {what} is not {encoding} text (byte {exc.start})") from None


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----")


def certificate_blocks(text: str) -> list[str]:
    """The CERTIFICATE blocks of a PEM file, and nothing else: a combined file may hold a private key."""
    return [m.group().replace("\r\n", "\n") + "\n" for m in _CERTIFICATE.finditer(text)]
