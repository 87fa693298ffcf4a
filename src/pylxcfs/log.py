"""Logging setup for the daemon processes (stderr) and a rate-limited warning helper.

Role: one place that decides the log format, so the supervisor, its workers and the mfusepy backend
all write lines that say which process wrote them. Library modules only call logging.getLogger.
"""

from __future__ import annotations

import logging
import sys
import threading
import time


def setup_logging(debug: bool = False, tag: str = "pylxcfs") -> None:
    """Log to stderr at INFO (DEBUG with -d), each line tagged with the process role and pid."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {tag} %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


class RateLimited:
    """Log at most one line per key every `interval_s` seconds, counting what was suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}
        self._lock = threading.Lock()  # the sampler thread and the serving thread may both warn

    def warning(self, key: object, msg: str, *args: object) -> bool:
        """Log `msg` unless `key` was logged less than interval_s ago; True if it was logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        self.logger.warning(msg + (f" ({n} similar suppressed)" if n else ""), *args)
        return True
