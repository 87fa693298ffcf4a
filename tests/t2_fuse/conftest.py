"""Tier-2 helpers for the FUSE layer: a fake Renderer and raw request builders (no mount, no root)."""

from __future__ import annotations

import os

import pytest

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.ops import Operations
from pylxcfs.fuse.wire import Dispatcher
from pylxcfs.views.registry import VIEW_PATHS


class FakeRenderer:
    """Content that names the path and the caller, long enough to need several READs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def paths(self) -> tuple[str, ...]:
        return VIEW_PATHS

    def host_bytes(self, path: str) -> bytes:
        return b"host %s\n" % path.encode()

    def render(self, path: str, caller_pid: int) -> bytes:
        self.calls.append((path, caller_pid))
        return b"".join(b"%s pid=%d line=%05d\n" % (path.encode(), caller_pid, i) for i in range(400))


def request(opcode: int, body: bytes = b"", nodeid: int = P.FUSE_ROOT_ID, pid: int = 4242,
            unique: int = 7) -> bytes:
    """A request as the kernel writes it to /dev/fuse."""
    length = P.IN_HEADER.size + len(body)
    return P.IN_HEADER.pack(length, opcode, unique, nodeid, 0, 0, pid, 0, 0) + body


def read_body(fh: int, offset: int, size: int) -> bytes:
    return P.READ_IN.pack(fh, offset, size, P.FUSE_READ_LOCKOWNER, 0, os.O_RDONLY, 0)  # read(2): fuse_direct_io


def split_reply(out: bytes | None, unique: int = 7) -> tuple[int, bytes]:
    """(error, payload) of a reply; checks length and unique."""
    assert out is not None
    length, error, uniq = P.OUT_HEADER.unpack_from(out)
    assert length == len(out)
    assert uniq == unique
    return error, out[P.OUT_HEADER.size:]


@pytest.fixture
def renderer() -> FakeRenderer:
    return FakeRenderer()


@pytest.fixture
def dispatcher(renderer: FakeRenderer) -> Dispatcher:
    return Dispatcher(Operations(renderer))
