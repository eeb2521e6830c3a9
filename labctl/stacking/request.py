"""What a command asks of stacking: which machines, how, and what to do as each one stacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.cache.services import Endpoints
    from labctl.images.store import ImageStore
    from labctl.machine_status import HostAccess, MachineStatus
    from labctl.records import StackRecord
    from labctl.stacking.serving import Relayer


@dataclass(frozen=True)
class StackRequest:
    names: Sequence[str] = ()  # these machines (none: every machine that has not stacked fine)
    everything: bool = False   # every machine, stacked fine or not
    clean: bool = False        # unstack.sh and clean.sh first; never cloned
    cache: Path | None = None  # labctl's cache (the copies of served git mirrors); None: the default
    caches: Endpoints | None = None  # the host's package caches, when the lab uses them
    snapshot: Callable[[str, StackRecord], None] | None = None  # each machine's `stacked` snapshot
    fence: Callable[[Sequence[MachineStatus]], None] | None = None  # a classroom's copies fenced in once booted
    # This machine's (address, port)s offered to the lab's machines on other hosts for a block (hosts.services.relayer)
    relay: Relayer | None = None
    hosts: HostAccess | None = None  # the libvirt of the other hosts seats live on (the Context)
    images: ImageStore | None = None  # the host's stacked images (labctl.stacking.images); None: none used or kept
    fresh: bool = False  # stack.sh runs even when an image of the same stack is kept (its disk kept anew)
    straight: frozenset[str] = frozenset()  # machines `up` booted straight from a stacked image (no box)
