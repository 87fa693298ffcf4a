"""The generation board: a page shared by the workers one zygote forked, saying which of them keep partial renders.

Role: lets a worker answer the EOF read of another worker's handle itself. A READ at offset > 0 of another
worker's handle needs that worker only if it keeps the bytes of a partly read render (fuse/handles.py); the
EOF read after a render delivered whole (what nearly every reader sends last) does not. So each worker
publishes here how many partly read renders it keeps, and a reader of another worker's handle whose owner
keeps none answers end-of-file without asking it (fuse/worker.py `_route`).

The page is an anonymous shared mapping the zygote (fuse/zygote.py) creates before forking; every worker of
that generation inherits it. Slot i belongs to the zygote's i-th fork: (salt, kept), written by that worker only,
before it writes the reply that could make a reader continue (so a reader that sees the continuation request
sees the count that came with it). A worker not on the board (another generation, adopted, started without a
zygote, or past SLOTS forks) is unknown, and its handles' reads go to it as before.
"""

from __future__ import annotations

import mmap
import struct

SLOTS = 64
_SLOT = struct.Struct("=II")  # salt, partly read renders kept
_KEPT = struct.Struct("=I")
SIZE = SLOTS * _SLOT.size


def new_page() -> mmap.mmap:
    """The zygote's page (anonymous and shared: inherited by every fork)."""
    return mmap.mmap(-1, SIZE)


class Board:
    """One worker's view of its generation's page."""

    __slots__ = ("_at", "_mm", "_slot", "kept")

    def __init__(self, mm: mmap.mmap, index: int, salt: int) -> None:
        self._mm = mm
        self._slot = index * _SLOT.size if 0 <= index < SLOTS else -1
        self._at: dict[int, int] = {}  # salt -> slot offset, found by a scan
        self.kept = 0
        if self._slot >= 0:
            _SLOT.pack_into(mm, self._slot, salt, 0)

    def publish(self, kept: int) -> None:
        """How many partly read renders this worker keeps now."""
        if kept != self.kept and self._slot >= 0:
            self.kept = kept
            _KEPT.pack_into(self._mm, self._slot + 4, kept)

    def kept_by(self, salt: int) -> int | None:
        """How many partly read renders the worker with this salt keeps; None if it is not on the board. A handle
        exists only once its worker served the OPEN, after it took its slot, so a salt not found is never
        found later (slots are not reused): remembered as such."""
        at = self._at.get(salt)
        if at is None:
            at = next((i * _SLOT.size for i in range(SLOTS) if _SLOT.unpack_from(self._mm, i * _SLOT.size)[0] == salt),
                      -1)
            if len(self._at) >= 1024:
                self._at.clear()
            self._at[salt] = at
        if at < 0:
            return None
        return int(_KEPT.unpack_from(self._mm, at + 4)[0])
