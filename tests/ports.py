"""One way for tests to choose a port for a server they start."""

from __future__ import annotations

import random
import socket


def free_port() -> int:
    """A port free on every address, between 20000 and 32000: below the kernel's ephemeral range
    (32768-60999), so no outgoing connection of any process can take it between this check and the
    test's own bind (a port from bind(0) could: "Address already in use" once in CI), and below
    32768, above which apt-cacher-ng takes no port."""
    return free_base([0])


def free_base(offsets: list[int], top: int = 32000) -> int:
    """A base port whose base + offset is free on every address for every offset (a classroom's SSH
    and web ports), within free_port's range."""
    while True:
        base = random.randint(20000, top - max(offsets))  # noqa: S311 - a port number, not a secret
        try:
            for port in (base + o for o in offsets):
                for address in ("0.0.0.0", "127.0.0.1"):  # noqa: S104 - checking that no one holds it anywhere
                    with socket.socket() as s:
                        s.bind((address, port))
        except OSError:
            continue
        return base
