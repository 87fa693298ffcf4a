"""sharedtable.py and the loadavg view on it: slots, probing, deletion and compaction, a real second process that
maps the same memfd, a peer that holds the lock too long, a full table, and the sampler's pass clock."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from pylxcfs import sharedtable
from pylxcfs.hostfs import HostRoot
from pylxcfs.sampler import claim_pass, sample_once
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.sharedtable import SharedTable, TableBusy
from pylxcfs.views import loadavg

from .conftest import HOSTS

V = 8  # value size used by the raw-table tests


def _table(nslots: int = 16, slot_size: int = 64) -> SharedTable:
    return SharedTable(sharedtable.create("t", nslots, slot_size), V, owns_fd=True)


def _put(t: SharedTable, key: bytes, value: bytes) -> int:
    t.lock(exclusive=True)
    try:
        return t.claim(key, value)
    finally:
        t.unlock()


def _get(t: SharedTable, key: bytes) -> bytes | None:
    t.lock()
    try:
        i = t.find(key)
        return t.value(i) if i >= 0 else None
    finally:
        t.unlock()


def _scan(t: SharedTable) -> tuple[list[bytes], int]:
    """(live keys sorted, deleted slots), read under the shared lock."""
    t.lock()
    try:
        return sorted(k for _i, k in t.live()), t.deleted()
    finally:
        t.unlock()


def test_claim_find_delete_reuse_and_compact() -> None:
    t = _table(nslots=4)
    assert t.key_max == 64 - 16 - V
    keys = [b"/a", b"/b", b"/c", b"/d"]
    slots = [_put(t, k, k.ljust(V, b".")) for k in keys]
    assert sorted(slots) == [0, 1, 2, 3]
    assert _put(t, b"/e", b"e" * V) == -1  # full
    assert _put(t, b"/a", b"x" * V) == slots[0]  # an existing key keeps its slot and value
    assert _get(t, b"/a") == b"/a......"
    assert _put(t, b"k" * (t.key_max + 1), b"k" * V) == -1  # longer than a slot's key
    t.lock(exclusive=True)
    t.delete(t.find(b"/b"))
    t.unlock()
    assert _get(t, b"/b") is None
    assert _get(t, b"/c") == b"/c......"  # probing goes on past the deleted slot
    assert t.deleted() == 1
    assert _put(t, b"/e", b"e" * V) >= 0  # the deleted slot is reused
    t.lock(exclusive=True)
    t.delete(t.find(b"/a"))
    t.compact()
    t.unlock()
    assert t.deleted() == 0
    assert sorted(k for _i, k in t.live()) == [b"/c", b"/d", b"/e"]
    assert all(_get(t, k) is not None for k in (b"/c", b"/d", b"/e"))
    assert _get(t, b"/a") is None


def test_scans_stay_sparse_a_table_of_8192_slots_costs_the_pages_its_keys_use() -> None:
    # live(), deleted() and compact() visit every slot head; reading a never-written page of a memfd through the
    # mapping makes tmpfs allocate it, so a naive scan makes all 8 MiB resident. The memfd's allocated size
    # (st_blocks, counted by the kernel) must stay at the pages the keys landed in.
    fd = sharedtable.create("sparse")
    t = SharedTable(fd, V, owns_fd=True)
    keys = [f"/kubepods/pod{n}/ctr".encode() for n in range(12)]
    for k in keys:
        assert _put(t, k, k[-V:]) >= 0
    t.lock(exclusive=True)
    t.delete(t.find(keys[0]))
    t.delete(t.find(keys[1]))
    t.unlock()
    assert _scan(t) == (sorted(keys[2:]), 2)
    t.lock(exclusive=True)
    t.compact()
    t.unlock()
    assert _scan(t) == (sorted(keys[2:]), 0)
    assert all(_get(t, k) == k[-V:] for k in keys[2:])
    allocated = os.fstat(fd).st_blocks * 512
    assert allocated <= (1 + 2 * len(keys)) * 4096, f"{allocated} bytes of the memfd made resident by scans"


def test_a_second_process_sees_and_changes_the_same_table() -> None:
    t = _table()
    _put(t, b"/parent", b"p" * V)
    pid = os.fork()
    if pid == 0:  # a real peer: its own mapping of the inherited memfd, its own locks
        code = 1
        try:
            peer = SharedTable(t.fd, V)
            if _get(peer, b"/parent") == b"p" * V and _put(peer, b"/child", b"c" * V) >= 0:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _get(t, b"/child") == b"c" * V


def test_a_peer_that_holds_the_lock_too_long_gives_table_busy_not_a_hang() -> None:
    t = _table()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            peer = SharedTable(t.fd, V)  # kept: its lock lives as long as its own open file description
            peer.lock(exclusive=True)
            os.write(w, b"locked")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 16) == b"locked"
        with pytest.raises(TableBusy):
            t.lock()
        assert t._threads.acquire(blocking=False)  # the failed attempt left the thread lock free
        t._threads.release()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    t.lock()  # the kernel dropped the dead holder's lock
    t.unlock()


def test_a_foreign_or_corrupt_descriptor_is_refused_with_its_reason(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"\0" * 8192)
    fd = os.open(f, os.O_RDWR)
    try:
        assert not sharedtable.is_table(fd)
        with pytest.raises(ValueError, match="not a pylxcfs table"):
            SharedTable(fd, V)
    finally:
        os.close(fd)
    r, w = os.pipe()
    assert not sharedtable.is_table(r)
    os.close(r)
    os.close(w)
    good = sharedtable.create("t", 4, 64)
    try:
        assert sharedtable.is_table(good)
        os.ftruncate(good, 4096 + 3 * 64)  # shorter than its header says
        with pytest.raises(ValueError, match="do not fit"):
            SharedTable(good, V)
        # loadavg then keeps its own figures instead of failing every read
        assert loadavg.open_table(good).fd != good
    finally:
        os.close(good)


def test_pass_clock_one_pass_per_interval_whoever_asks() -> None:
    st = loadavg.LoadavgState(table=loadavg.open_table())
    assert st.table is not None
    t0 = 10**12
    assert claim_pass(st.table, 5.0, t0)  # a fresh table: at once
    assert not claim_pass(st.table, 5.0, t0 + 1)  # a peer asking right after: not yet
    assert not claim_pass(st.table, 5.0, t0 + 4_900_000_000)
    assert claim_pass(st.table, 5.0, t0 + 5_300_000_000)  # late by 0.3 s: runs, and the cadence is kept
    due, passes, pid = st.table.user(loadavg.PASS)
    assert (due, passes, pid) == (t0 + 10_000_000_000, 2, os.getpid())
    assert claim_pass(st.table, 5.0, t0 + 60_000_000_000)  # long overdue: starts afresh from now
    assert st.table.user(loadavg.PASS)[0] == t0 + 65_000_000_000


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "host"
    shutil.copytree(HOSTS / "x86_64-unified-ubuntu22", dst, symlinks=True)
    return dst


def test_two_renderers_on_one_table_show_one_history(tmp_path: Path) -> None:
    """Two Renderers (as two workers) on the supervisor's table: one registers, a pass steps it, both read it."""
    tree = _copy(tmp_path)
    fd = sharedtable.create("pool")
    try:
        a = Renderer(HostRoot.from_dir(tree), ViewOptions(enable_loadavg=True), shared_fd=fd)
        b = Renderer(HostRoot.from_dir(tree), ViewOptions(enable_loadavg=True), shared_fd=fd)
        assert a.render("proc/loadavg", 4243) == b"0.00 0.00 0.00 0/1 4242\n"
        sample_once(a.root, loadavg.state_of(a.env))  # a pass run by the first worker ...
        assert b.render("proc/loadavg", 4243) == b"0.08 0.02 0.01 1/2 4243\n"  # ... seen by the second
        assert a.render("proc/loadavg", 4243) == b"0.08 0.02 0.01 1/2 4243\n"
    finally:
        os.close(fd)


def test_a_full_table_keeps_figures_in_the_process(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    fd = sharedtable.create("tiny", 1, 1024)
    try:
        r = Renderer(HostRoot.from_dir(tree), ViewOptions(enable_loadavg=True), shared_fd=fd)
        st = loadavg.state_of(r.env)
        assert st.table is not None
        _put(st.table, b"/someone/else", loadavg.VALUE.pack(0, 0, 0, 0, 1, 1, 0))  # the one slot is taken
        assert r.render("proc/loadavg", 4243) == b"0.00 0.00 0.00 0/1 4242\n"
        assert list(st.nodes) == [f"{r.root.cgroup}/system.slice/docker-abc.scope"]
        sample_once(r.root, st)  # the process's own nodes are sampled too (the foreign slot's cgroup is gone)
        assert r.render("proc/loadavg", 4243) == b"0.08 0.02 0.01 1/2 4243\n"
        assert [k for _i, k in st.table.live()] == []
    finally:
        os.close(fd)


def test_a_stuck_peer_makes_loadavg_serve_the_host_file(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    fd = sharedtable.create("busy")
    r = Renderer(HostRoot.from_dir(tree), ViewOptions(enable_loadavg=True), shared_fd=fd)
    pid = os.fork()
    if pid == 0:
        try:
            peer = SharedTable(fd, loadavg.VALUE.size)
            peer.lock(exclusive=True)
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = r.render("proc/loadavg", 4243)
            if ("proc/loadavg", "TableBusy") in r.fallbacks:
                break
            time.sleep(0.01)
        assert data == (tree / "proc/loadavg").read_bytes()
        assert r.fallbacks[("proc/loadavg", "TableBusy")] >= 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def test_a_forked_child_of_a_user_does_not_share_its_lock() -> None:
    """The zygote's children inherit one open file description of the memfd; a table object used before a fork
    must still exclude parent and child (each locks through a description of its own)."""
    t = _table()
    t.lock()
    t.unlock()  # used in the parent: it has its own description now
    t.lock(exclusive=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                t._threads = threading.Lock()  # the parent's thread lock was copied held; only the OFD lock counts
                t.lock()
            except TableBusy:
                code = 0
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    try:
        assert os.read(r, 1) == b"\0", "the child took a lock the parent holds exclusively"
    finally:
        os.waitpid(pid, 0)
        os.close(r)
        t.unlock()
