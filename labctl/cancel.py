"""One run's cancellation, handed down instead of a module-wide flag: set once when labctl is
interrupted (Ctrl-C, SIGTERM); every wait that watches it stops, and every closer registered on it
(the run's open SSH sessions) is called, so that what runs in the machines gets EOF and ends."""

from __future__ import annotations

import threading
from collections.abc import Callable


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._closers: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True at once when the run is cancelled."""
        return self._event.wait(seconds)

    def cancel(self) -> None:
        """Stop every wait and call every registered closer (each once, outside the lock)."""
        self._event.set()
        with self._lock:
            closers, self._closers = list(self._closers.values()), {}
        for close in closers:
            close()

    def on_cancel(self, close: Callable[[], None]) -> Callable[[], None]:
        """Register `close` for a cancel; returns what unregisters it (the thing closed normally).
        Registered after a cancel, it is called at once."""
        with self._lock:
            if not self._event.is_set():
                key, self._next = self._next, self._next + 1
                self._closers[key] = close
                return lambda: self._forget(key)
        close()
        return lambda: None

    def _forget(self, key: int) -> None:
        with self._lock:
            self._closers.pop(key, None)
