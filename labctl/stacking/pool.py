"""The threads in which machines are worked on at once (stack.sh in each, a seat made from each copy)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from labctl.remote import CANCELLED, cancel_all


@contextlib.contextmanager
def machine_pool(size: int) -> Iterator[ThreadPoolExecutor]:
    """One thread per machine. On Ctrl-C or SIGTERM (any exception in the caller), every SSH wait and
    session ends first (labctl.remote.cancel_all), so that the workers, and what they run in the
    machines, stop at once; then the pool waits for them: nothing is left running behind labctl."""
    CANCELLED.clear()
    pool = ThreadPoolExecutor(max_workers=max(1, size))
    try:
        yield pool
    except BaseException:
        cancel_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
