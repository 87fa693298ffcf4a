"""Tier 2: the per-caller directory view (/sys/devices/system/cpu) through the raw dispatcher, over a small host
directory built in tmp (no mount, no root). The fake renderer hides cpu0 from CONTAINER_PID only, so every
expectation below follows from that rule and from the files written by make_cpu_dir."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.ops import Operations, passthrough_ino, stable_ino
from pylxcfs.fuse.wire import Dispatcher

from .conftest import CONTAINER_PID, FakeRenderer, make_cpu_dir, read_body, request, split_reply

CPU = "sys/devices/system/cpu"
HOST_PID = 4242


@pytest.fixture
def cpu_dir(tmp_path: Path) -> Path:
    return make_cpu_dir(tmp_path / "cpu")


@pytest.fixture
def renderer(cpu_dir: Path) -> FakeRenderer:
    return FakeRenderer(cpu_dir)


@pytest.fixture
def d(renderer: FakeRenderer) -> Dispatcher:
    return Dispatcher(Operations(renderer))


def lookup(d: Dispatcher, parent: int, name: str, pid: int = HOST_PID) -> tuple[int, int, float, tuple[int, ...]]:
    """(errno, nodeid, entry timeout, fuse_attr fields)."""
    err, payload = split_reply(d.handle(request(P.Opcode.LOOKUP, name.encode() + b"\0", parent, pid)))
    if err:
        return err, 0, 0.0, ()
    nodeid, _gen, ev, _av, evn, _avn = P.ENTRY_OUT.unpack_from(payload)
    return 0, nodeid, ev + evn / 1e9, P.ATTR.unpack_from(payload, P.ENTRY_OUT.size)


def walk(d: Dispatcher, path: str, pid: int = HOST_PID) -> tuple[int, int, float, tuple[int, ...]]:
    ino, res = P.FUSE_ROOT_ID, (0, P.FUSE_ROOT_ID, 0.0, ())
    for name in path.split("/"):
        res = lookup(d, ino, name, pid)
        if res[0]:
            return res
        ino = res[1]
    return res


def names(d: Dispatcher, ino: int, pid: int = HOST_PID) -> list[str]:
    err, payload = split_reply(d.handle(request(P.Opcode.READDIR, read_body(0, 0, 65536), ino, pid)))
    assert err == 0
    out, pos = [], 0
    while pos < len(payload):
        _ino, _off, namelen, _type = P.DIRENT.unpack_from(payload, pos)
        out.append(payload[pos + 24:pos + 24 + namelen].decode())
        pos += (24 + namelen + 7) // 8 * 8
    return out


def read_file(d: Dispatcher, ino: int, pid: int = HOST_PID) -> tuple[int, bytes]:
    err, payload = split_reply(d.handle(request(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0), ino, pid)))
    if err:
        return err, b""
    fh = P.OPEN_OUT.unpack(payload)[0]
    err, data = split_reply(d.handle(request(P.Opcode.READ, read_body(fh, 0, 65536), ino, pid)))
    return err, data


def test_listing_is_per_caller_and_merges_the_registry_files(d: Dispatcher, cpu_dir: Path) -> None:
    ino = stable_ino(CPU)
    host_view = names(d, ino, HOST_PID)
    ct_view = names(d, ino, CONTAINER_PID)
    registry_files = ["offline", "online", "possible", "present"]
    assert host_view[:2] == [".", ".."] and host_view[2:6] == registry_files
    assert sorted(host_view[6:]) == sorted(set(os.listdir(cpu_dir)) - set(registry_files))
    assert host_view.count("online") == 1  # the host's online is shadowed by the registry's, not listed twice
    assert ct_view == [n for n in host_view if n != "cpu0"]


def test_hidden_cpu_is_enoent_for_the_container_only(d: Dispatcher) -> None:
    err, nodeid, timeout, attr = walk(d, f"{CPU}/cpu0", HOST_PID)
    assert err == 0 and stat.S_ISDIR(attr[9]) and timeout == 0.0  # existence is per caller: never cached
    assert walk(d, f"{CPU}/cpu0", CONTAINER_PID)[0] == -errno.ENOENT
    # the host caller's node id does not open a way in for the container: lookups and listings below it
    assert lookup(d, nodeid, "topology", CONTAINER_PID)[0] == -errno.ENOENT
    err, _ = split_reply(d.handle(request(P.Opcode.READDIR, read_body(0, 0, 4096), nodeid, CONTAINER_PID)))
    assert err == -errno.ENOENT
    core = walk(d, f"{CPU}/cpu0/topology/core_id", HOST_PID)[1]
    assert read_file(d, core, CONTAINER_PID)[0] == -errno.ENOENT
    assert read_file(d, core, HOST_PID) == (0, b"0\n")


def test_passthrough_attributes_come_from_the_host_lstat(d: Dispatcher, cpu_dir: Path) -> None:
    err, nodeid, timeout, attr = walk(d, f"{CPU}/cpu1/topology/core_id", CONTAINER_PID)
    st = os.lstat(cpu_dir / "cpu1/topology/core_id")
    assert err == 0 and timeout == 0.5  # below a visible entry: cached like any other entry
    assert (attr[0], attr[1], attr[9], attr[10]) == (nodeid, st.st_size, st.st_mode & ~0o222, st.st_nlink)
    assert nodeid == passthrough_ino(f"{CPU}/cpu1/topology/core_id")
    assert read_file(d, nodeid, CONTAINER_PID) == (0, b"1\n")
    err, payload = split_reply(d.handle(request(P.Opcode.GETATTR, P.GETATTR_IN.pack(0, 0, 0), nodeid)))
    assert err == 0 and P.ATTR.unpack_from(payload, P.ATTR_OUT.size)[9] == st.st_mode & ~0o222


def test_symlinks_are_reported_and_never_followed(d: Dispatcher, cpu_dir: Path) -> None:
    err, node0, _t, attr = walk(d, f"{CPU}/cpu1/node0", CONTAINER_PID)
    assert err == 0 and stat.S_ISLNK(attr[9])
    err, payload = split_reply(d.handle(request(P.Opcode.READLINK, b"", node0, CONTAINER_PID)))
    assert (err, payload) == (0, os.readlink(cpu_dir / "cpu1/node0").encode())
    err, escape, _t, attr = walk(d, f"{CPU}/cpu1/escape", CONTAINER_PID)
    assert err == 0 and stat.S_ISLNK(attr[9])
    assert lookup(d, escape, "passwd")[0] == -errno.ENOTDIR  # /etc is never looked into through the link
    assert read_file(d, escape)[0] == -errno.ELOOP
    assert split_reply(d.handle(request(P.Opcode.READLINK, b"", stable_ino(f"{CPU}/online"))))[0] == -errno.EINVAL


def test_registry_files_in_the_tree_are_rendered_and_other_files_passed_through(d: Dispatcher,
                                                                                 renderer: FakeRenderer) -> None:
    err, online, timeout, _ = walk(d, f"{CPU}/online", CONTAINER_PID)
    assert err == 0 and online == stable_ino(f"{CPU}/online") and timeout == 0.5
    err, data = read_file(d, online, CONTAINER_PID)
    assert err == 0 and data.startswith(b"%s/online pid=%d " % (CPU.encode(), CONTAINER_PID))
    kmax = walk(d, f"{CPU}/kernel_max", CONTAINER_PID)[1]
    assert read_file(d, kmax, CONTAINER_PID) == (0, b"8191\n")
    assert (f"{CPU}/kernel_max", CONTAINER_PID) not in renderer.calls


def test_another_worker_knows_the_inode_numbers(renderer: FakeRenderer, d: Dispatcher) -> None:
    nodeid = walk(d, f"{CPU}/cpu1/cache/index0/size", CONTAINER_PID)[1]
    other = Dispatcher(Operations(renderer))  # a fresh worker: it never answered that LOOKUP
    err, payload = split_reply(other.handle(request(P.Opcode.GETATTR, P.GETATTR_IN.pack(0, 0, 0), nodeid)))
    assert err == 0 and P.ATTR.unpack_from(payload, P.ATTR_OUT.size)[0] == nodeid
    assert read_file(other, nodeid, CONTAINER_PID) == (0, b"32K\n")


def test_vanished_entry_is_enoent(d: Dispatcher, cpu_dir: Path) -> None:
    nodeid = walk(d, f"{CPU}/vulnerabilities/meltdown")[1]
    (cpu_dir / "vulnerabilities/meltdown").unlink()
    err, _ = split_reply(d.handle(request(P.Opcode.GETATTR, P.GETATTR_IN.pack(0, 0, 0), nodeid)))
    assert err == -errno.ENOENT
    assert lookup(d, stable_ino(CPU), "nonexistent")[0] == -errno.ENOENT
