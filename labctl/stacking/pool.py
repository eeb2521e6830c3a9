"""The threads in which machines are worked on at once (stack.sh in each, a seat made from each copy)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from labctl.cancel import CancelToken


@contextlib.contextmanager
def machine_pool(size: int, cancel: CancelToken) -> Iterator[ThreadPoolExecutor]:
    """One thread per machine. On Ctrl-C or SIGTERM (any exception in the caller), the run is
    cancelled first (every SSH wait and session of it ends), so that the workers, and what they run in
    the machines, stop at once; then the pool waits for them: nothing is left running behind labctl."""
    pool = ThreadPoolExecutor(max_workers=max(1, size))
    try:
        yield pool
    except BaseException:
        cancel.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
