"""The file-handle table: what each open file handle needs of its last render, with identical renders shared.

Role: storage for fuse/ops.py Operations (open/read/release). Nothing here renders or knows paths. Per handle:
- b"" before its first render;
- an int, the LENGTH of its last render, when that render was delivered whole by one READ (what `cat`, top,
  Python and nearly every reader do: the file fits their read size). Their next read is at that length (EOF),
  so the bytes need not be kept;
- the render's bytes, when the reader got only a part (a small read size, or a file larger than one READ):
  the read at the offset where the last piece ended continues exactly those bytes, so a reader never sees a
  torn file; once the reader has had the last piece, only the length is kept.

Handles are 64-bit: a random per-process salt in the high 32 bits and a counter in the low 32. A worker that
replaced a crashed or retired one therefore never mistakes a handle opened through its predecessor (a "foreign"
handle) for one of its own. Foreign handles are kept in a separate, bounded table: their RELEASE may go to
another worker and never reach us.

Memory (docs/design-fuse.md, "Memory per handle"): kept buffers are shared by content once the table holds
`share_from` handles or more (every container with the same cpuset has the same cpuinfo): handles with equal
renders point at ONE bytes object, counted by reference and freed with its last holder. Below that threshold
nothing is hashed. The bytes kept (each shared buffer counted once) are capped at `max_bytes`: a partial read
that would exceed it is refused (`HandlesFull`, ENOMEM for the reader) rather than served without the bytes its
continuation needs; readers that take a file whole in one READ keep nothing and are never refused.
"""

from __future__ import annotations

import os

# Foreign handles kept at most (their RELEASE may go to another worker and never reach us).
MAX_FOREIGN = 4096
# From this many live handles on, kept renders are shared by content (see the module doc).
SHARE_FROM = 64
# Bytes of partially read renders kept at most per process (shared buffers counted once).
MAX_BYTES = 32 << 20
_EMPTY = b""


class HandlesFull(Exception):
    """Keeping one more partially read render would exceed the table's byte cap."""


class HandleTable:
    """fh -> b"" (not rendered), the length of a render delivered whole, or the bytes of a partly read one."""

    __slots__ = ("_canon", "_next", "_refs", "foreign", "held_bytes", "max_bytes", "max_foreign", "own", "resume",
                 "salt", "share_from")

    def __init__(self, salt: int | None = None, share_from: int = SHARE_FROM, max_foreign: int = MAX_FOREIGN,
                 max_bytes: int = MAX_BYTES) -> None:
        self.salt = (salt if salt is not None else int.from_bytes(os.urandom(4), "little") | 1) & 0xFFFFFFFF
        self.share_from = share_from
        self.max_foreign = max_foreign
        self.max_bytes = max_bytes
        self.held_bytes = 0  # len() of every kept buffer, each shared one once
        self._next = 0
        self.own: dict[int, bytes | int] = {}
        self.foreign: dict[int, bytes | int] = {}
        # The intern table: content -> its one shared object, and how many handles hold that object (by id: the
        # object is alive while it is in _canon, so no other live object can carry the same id).
        self._canon: dict[bytes, bytes] = {}
        self._refs: dict[int, int] = {}
        # Handles holding bytes -> the offset their reader's next sequential read starts at (the end of the last
        # piece served). Only a read there continues the kept render (see Operations.read).
        self.resume: dict[int, int] = {}

    def new(self) -> int:
        """A fresh own handle holding nothing yet."""
        self._next = (self._next + 1) & 0xFFFFFFFF
        fh = (self.salt << 32) | self._next
        self.own[fh] = _EMPTY
        return fh

    def content(self, fh: int) -> bytes | int | None:
        """What the handle holds (see the class doc), or None for a handle we do not know."""
        data = self.own.get(fh)
        if data is None:
            return self.foreign.get(fh)
        return data

    def delivered(self, fh: int, length: int) -> None:
        """The handle's new render (of `length` bytes) went to the reader whole: keep only its length."""
        own = self.own
        old = own.get(fh)
        if old is not None and not (old and isinstance(old, bytes)):  # the common case: nothing to free
            own[fh] = length
        else:
            self._put(fh, length)

    def keep(self, fh: int, data: bytes, resume: int) -> bytes:
        """Keep `data` (a render the reader got the first `resume` bytes of) as the handle's content; returns the
        object kept (the shared copy when sharing is on). Raises HandlesFull past max_bytes (the handle keeps its
        old state)."""
        if len(self.own) + len(self.foreign) >= self.share_from:
            canon = self._canon.get(data)
            if canon is None:
                self._charge(len(data))
                canon = self._canon[data] = data
            key = id(canon)
            self._refs[key] = self._refs.get(key, 0) + 1
            data = canon
        else:
            self._charge(len(data))
        self._put(fh, data)
        self.resume[fh] = resume
        return data

    def drop(self, fh: int) -> None:
        """RELEASE: forget the handle (unknown handles are ignored: their owner may have been another worker)."""
        old = self.own.pop(fh, None)
        if old is None:
            old = self.foreign.pop(fh, None)
        if old and isinstance(old, bytes):
            self._free(old)
            self.resume.pop(fh, None)

    def __len__(self) -> int:
        return len(self.own) + len(self.foreign)

    def distinct_buffers(self) -> int:
        """How many different bytes objects the handles keep (for tests and stats; O(handles))."""
        kept = [b for b in (*self.own.values(), *self.foreign.values()) if b and isinstance(b, bytes)]
        return len({id(b) for b in kept})

    def shared_buffers(self) -> int:
        """How many interned objects are alive."""
        return len(self._canon)

    def _charge(self, n: int) -> None:
        if self.held_bytes + n > self.max_bytes:
            raise HandlesFull(f"{self.held_bytes} bytes of partly read renders kept; {n} more exceed {self.max_bytes}")
        self.held_bytes += n

    def _put(self, fh: int, value: bytes | int) -> None:
        own = self.own
        old = own.get(fh)
        if old is not None:
            own[fh] = value
        else:
            foreign = self.foreign
            old = foreign.get(fh)
            if old is None and len(foreign) >= self.max_foreign:
                gone = next(iter(foreign))
                evicted = foreign.pop(gone)
                if evicted and isinstance(evicted, bytes):
                    self._free(evicted)
                    self.resume.pop(gone, None)
            foreign[fh] = value
        if old and isinstance(old, bytes):
            self._free(old)
            self.resume.pop(fh, None)

    def _free(self, data: bytes) -> None:
        key = id(data)
        n = self._refs.get(key)
        if n is None:  # kept below the sharing threshold: its own bytes
            self.held_bytes -= len(data)
        elif n > 1:
            self._refs[key] = n - 1
        else:
            del self._refs[key]
            del self._canon[data]
            self.held_bytes -= len(data)
