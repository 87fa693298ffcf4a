"""The file-handle table: which bytes each open file handle last rendered, with identical renders shared.

Role: storage for fuse/ops.py Operations (open/read/release). A handle holds the content of its last read at
offset 0 (what reads at offset > 0 continue, so a reader never sees a torn file) or b"" before its first read.
Nothing here renders or knows paths.

Handles are 64-bit: a random per-process salt in the high 32 bits and a counter in the low 32. A worker that
replaced a crashed or retired one therefore never mistakes a handle opened through its predecessor (a "foreign"
handle) for one of its own. Foreign handles are kept in a separate, bounded table: their RELEASE may go to
another worker and never reach us.

Memory (docs/design-fuse.md, "Memory per handle"): many handles often hold the same bytes (every container with
the same cpuset reads the same cpuinfo; a file held open and re-read by thousands of processes). Once the table
holds `share_from` handles or more, each stored render is interned by content: handles with equal renders point
at ONE bytes object, counted by reference and freed when its last holder is released or re-rendered. Below that
threshold nothing is hashed (memory is bounded by share_from renders anyway) and the read path stays as cheap as
a dict store.
"""

from __future__ import annotations

import os

# Foreign handles kept at most (their RELEASE may go to another worker and never reach us).
MAX_FOREIGN = 4096
# From this many live handles on, stored renders are shared by content (see the module doc).
SHARE_FROM = 64
_EMPTY = b""


class HandleTable:
    """fh -> the bytes of its last offset-0 render; own handles (our salt) and bounded foreign ones."""

    __slots__ = ("_canon", "_next", "_refs", "foreign", "max_foreign", "own", "salt", "share_from")

    def __init__(self, salt: int | None = None, share_from: int = SHARE_FROM, max_foreign: int = MAX_FOREIGN) -> None:
        self.salt = (salt if salt is not None else int.from_bytes(os.urandom(4), "little") | 1) & 0xFFFFFFFF
        self.share_from = share_from
        self.max_foreign = max_foreign
        self._next = 0
        self.own: dict[int, bytes] = {}
        self.foreign: dict[int, bytes] = {}
        # The intern table: content -> its one shared object, and how many handles hold that object (by id: the
        # object is alive while it is in _canon, so no other live object can carry the same id).
        self._canon: dict[bytes, bytes] = {}
        self._refs: dict[int, int] = {}

    def new(self) -> int:
        """A fresh own handle holding nothing yet (a read at offset > 0 before any offset-0 read is EOF)."""
        self._next = (self._next + 1) & 0xFFFFFFFF
        fh = (self.salt << 32) | self._next
        self.own[fh] = _EMPTY
        return fh

    def content(self, fh: int) -> bytes | None:
        """What the handle holds (b"" if never read from offset 0), or None for a handle we do not know."""
        data = self.own.get(fh)
        if data is None:
            return self.foreign.get(fh)
        return data

    def store(self, fh: int, data: bytes) -> bytes:
        """Make `data` the handle's content (a foreign handle is adopted, within MAX_FOREIGN) and return the object
        actually kept: the shared copy when sharing is on, else `data` itself."""
        own = self.own
        if data and len(own) + len(self.foreign) >= self.share_from:
            data = self._share(data)
        old = own.get(fh)
        if old is not None:
            own[fh] = data
        else:
            foreign = self.foreign
            old = foreign.get(fh)
            if old is None and len(foreign) >= self.max_foreign:
                self._unshare(foreign.pop(next(iter(foreign))))
            foreign[fh] = data
        if old and self._refs:
            self._unshare(old)
        return data

    def drop(self, fh: int) -> None:
        """RELEASE: forget the handle (unknown handles are ignored: their owner may have been another worker)."""
        old = self.own.pop(fh, None)
        if old is None:
            old = self.foreign.pop(fh, None)
        if old and self._refs:
            self._unshare(old)

    def __len__(self) -> int:
        return len(self.own) + len(self.foreign)

    def distinct_buffers(self) -> int:
        """How many different bytes objects the handles hold (for tests and stats; O(handles))."""
        return len({id(b) for b in self.own.values() if b} | {id(b) for b in self.foreign.values() if b})

    def shared_buffers(self) -> int:
        """How many interned objects are alive."""
        return len(self._canon)

    def _share(self, data: bytes) -> bytes:
        canon = self._canon.setdefault(data, data)
        key = id(canon)
        self._refs[key] = self._refs.get(key, 0) + 1
        return canon

    def _unshare(self, data: bytes) -> None:
        key = id(data)
        n = self._refs.get(key)
        if n is None:  # stored below the threshold: never interned
            return
        if n > 1:
            self._refs[key] = n - 1
        else:
            del self._refs[key]
            del self._canon[data]
