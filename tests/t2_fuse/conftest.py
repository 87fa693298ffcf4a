"""Tier-2 helpers for the FUSE layer: a fake Renderer and raw request builders (no mount, no root)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.ops import Operations
from pylxcfs.fuse.wire import Dispatcher
from pylxcfs.hosttree import HostTree
from pylxcfs.views.registry import TREE_PATHS, VIEW_PATHS

CONTAINER_PID = 1001  # the fake renderer's one "container" caller: it does not see cpu0


def make_cpu_dir(top: Path) -> Path:
    """A small host /sys/devices/system/cpu: two CPUs, symlinks, a registry-shadowed file."""
    for d in ("cpu0/topology", "cpu1/topology", "cpu1/cache/index0", "vulnerabilities"):
        (top / d).mkdir(parents=True)
    (top / "cpu0/topology/core_id").write_text("0\n")
    (top / "cpu1/topology/core_id").write_text("1\n")
    (top / "cpu1/cache/index0/size").write_text("32K\n")
    (top / "cpu1/online").write_text("1\n")
    (top / "cpu1/node0").symlink_to("../../node/node0")
    (top / "cpu1/escape").symlink_to("/etc")
    (top / "kernel_max").write_text("8191\n")
    (top / "online").write_text("0-1\n")  # shadowed by the registry's online file
    (top / "vulnerabilities/meltdown").write_text("Not affected\n")
    return top


class FakeRenderer:
    """Content that names the path and the caller, long enough to need several READs. Directory views pass
    through `cpu_dir` (when given); CONTAINER_PID does not see cpu0 there."""

    def __init__(self, cpu_dir: Path | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.hidden_calls: list[tuple[str, int]] = []
        self._trees = {t: HostTree(str(cpu_dir) if cpu_dir else "/nonexistent-host-tree") for t in TREE_PATHS}

    def paths(self) -> tuple[str, ...]:
        return VIEW_PATHS

    def tree_paths(self) -> tuple[str, ...]:
        return TREE_PATHS

    def host_tree(self, tree: str) -> HostTree:
        return self._trees[tree]

    def hidden(self, tree: str, caller_pid: int, names: Iterable[str]) -> frozenset[str]:
        self.hidden_calls.append((tree, caller_pid))
        return frozenset(n for n in names if n == "cpu0") if caller_pid == CONTAINER_PID else frozenset()

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
