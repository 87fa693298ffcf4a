"""REAL resolution on this machine (root, v1/hybrid cgroups): processes in a new pid namespace inside v1
cgroups this test creates under its own parent (pylxcfs-test-core-<pid>, removed afterwards), read through
Renderer(HostRoot(), ...) exactly as the daemon does. Expected values come from the limits set here and from
the host's own /proc files."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pylxcfs.cgroups import memory
from pylxcfs.context import CgroupDir
from pylxcfs.errors import NotInContainer
from pylxcfs.hostfs import HostRoot
from pylxcfs.procs.resolve import Resolver
from pylxcfs.sampler import sample_once
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.loadavg import STATE_KEY
from support.cgv1 import CgroupTree, V1Cgroup
from support.fusedaemon import children

MiB = 1 << 20

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def tree() -> Iterator[CgroupTree]:
    if os.geteuid() != 0:
        pytest.fail("the real resolution tests need root (this machine kind runs tests as root)")
    t = CgroupTree("core")
    t.create()
    try:
        yield t
    finally:
        t.destroy()


@dataclass
class Container:
    proc: subprocess.Popen[bytes]
    init: int
    member: int  # a second process in the namespace (not the init)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_container(cg: V1Cgroup, member_cmd: str = "sleep 60") -> Container:
    """`unshare -p -f sh -c '<member_cmd> & wait'` with the sh (pid 1 of the new ns) inside cg."""
    files = [str(p) for p in cg.procs_files()]

    def enter() -> None:
        for f in files:
            with open(f, "w") as fh:
                fh.write(str(os.getpid()))

    p = subprocess.Popen(["unshare", "-p", "-f", "--kill-child", "sh", "-c", f"{member_cmd} & wait"],
                         preexec_fn=enter)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = children(p.pid)
        if kids and children(kids[0]):
            return Container(p, kids[0], children(kids[0])[0])
        time.sleep(0.02)
    p.kill()
    p.wait()
    raise AssertionError("container did not start")


def _kv(text: bytes) -> dict[str, int]:
    return {ln.partition(":")[0]: int(ln.split()[1]) for ln in text.decode().splitlines()}


def test_container_sees_its_limit_and_host_sees_host(tree: CgroupTree) -> None:
    cg = tree.child("ct", memory_limit=256 * MiB)
    c = start_container(cg)
    try:
        r = Renderer(HostRoot(), ViewOptions())
        for pid in (c.init, c.member):
            v = _kv(r.render("proc/meminfo", pid))
            assert v["MemTotal"] == 256 * 1024
            assert 0 <= v["MemFree"] <= 256 * 1024
            assert v["MemAvailable"] <= v["MemTotal"]
        assert not r.fallbacks
        host = r.render("proc/meminfo", os.getpid()).decode()
        with open("/proc/meminfo") as f:
            real = f.read()
        assert host.splitlines()[0] == real.splitlines()[0]  # MemTotal line of the host, unchanged
        assert [ln.split(":")[0] for ln in host.splitlines()] == [ln.split(":")[0] for ln in real.splitlines()]
        with pytest.raises(NotInContainer):
            r.resolver.resolve(os.getpid())
    finally:
        c.stop()


def test_ancestor_limit_applies_and_walk_matches_kernel(tree: CgroupTree) -> None:
    outer = tree.child("nest", memory_limit=128 * MiB)
    inner = tree.child("nest/big", memory_limit=1024 * MiB)
    c = start_container(inner)
    try:
        r = Renderer(HostRoot(), ViewOptions())
        assert _kv(r.render("proc/meminfo", c.member))["MemTotal"] == 128 * 1024
        ctx = r.resolver.resolve(c.member)
        assert ctx.memory is not None and ctx.memory.path == str(inner.dir("memory"))
        # our ancestor walk and the kernel's hierarchical_memory_limit agree
        assert memory.memory_limit(ctx.memory) == memory.memory_stat(ctx.memory).hierarchical_limit == 128 * MiB
        assert outer.read("memory", "memory.limit_in_bytes") == str(128 * MiB)
    finally:
        c.stop()


def test_init_scope_is_pruned(tree: CgroupTree) -> None:
    tree.child("sd", memory_limit=512 * MiB)
    scope = tree.child("sd/init.scope", memory_limit=64 * MiB)
    c = start_container(scope)
    try:
        v = _kv(Renderer(HostRoot(), ViewOptions()).render("proc/meminfo", c.member))
        assert v["MemTotal"] == 512 * 1024  # LXCFS: init in <cg>/init.scope reads <cg>
    finally:
        c.stop()


def test_process_entered_with_setns_finds_the_init(tree: CgroupTree) -> None:
    cg = tree.child("ns", memory_limit=200 * MiB)
    c = start_container(cg)
    entered = subprocess.Popen(["nsenter", "-t", str(c.init), "-p", "--", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        pid = 0
        while time.monotonic() < deadline and not pid:
            kids = children(entered.pid)
            pid = kids[0] if kids else 0
            time.sleep(0.02)
        assert pid, "nsenter child did not appear"
        # its parent (nsenter) is in the host pid namespace: the PPid walk leaves the namespace, /proc is scanned
        ctx = Resolver(HostRoot()).resolve(pid)
        assert ctx.init_pid == c.init
    finally:
        entered.kill()
        entered.wait()
        c.stop()


def test_cache_follows_a_new_container(tree: CgroupTree) -> None:
    cg1 = tree.child("c1", memory_limit=100 * MiB)
    cg2 = tree.child("c2", memory_limit=300 * MiB)
    r = Renderer(HostRoot(), ViewOptions())
    c1 = start_container(cg1)
    try:
        assert _kv(r.render("proc/meminfo", c1.member))["MemTotal"] == 100 * 1024
        assert _kv(r.render("proc/meminfo", c1.member))["MemTotal"] == 100 * 1024  # cached path
    finally:
        c1.stop()
    c2 = start_container(cg2)
    try:
        assert _kv(r.render("proc/meminfo", c2.member))["MemTotal"] == 300 * 1024
        assert r.resolver.resolve(c2.member).init_pid == c2.init
    finally:
        c2.stop()


def test_uptime_of_a_fresh_container(tree: CgroupTree) -> None:
    cg = tree.child("up")
    c = start_container(cg)
    try:
        time.sleep(0.2)
        out = Renderer(HostRoot(), ViewOptions()).render("proc/uptime", c.member).decode()
        age, idle = (float(x) for x in out.split())
        with open("/proc/uptime") as f:
            host_age = float(f.read().split()[0])
        assert 0.0 <= age < 30.0 < host_age
        assert 0.0 <= idle <= age
    finally:
        c.stop()


def test_loadavg_counts_a_busy_task(tree: CgroupTree) -> None:
    cg = tree.child("busy")
    c = start_container(cg, "sh -c 'while :; do :; done'")
    try:
        r = Renderer(HostRoot(), ViewOptions(enable_loadavg=True))
        first = r.render("proc/loadavg", c.member).decode()
        assert first == f"0.00 0.00 0.00 0/1 {c.init}\n"
        time.sleep(0.2)
        sample_once(r.root, r.env.states[STATE_KEY])
        la = r.render("proc/loadavg", c.member).decode().split()
        running, total = (int(x) for x in la[3].split("/"))
        # members: the init sh, the busy sh (and the loop's own sh if the shell forked one)
        assert running >= 1 and total >= 2
        assert float(la[0]) > 0.0
    finally:
        c.stop()


def test_v1_memsw_becomes_swap_only(tree: CgroupTree) -> None:
    cg = tree.child("sw", memory_limit=256 * MiB, memsw_limit=384 * MiB)
    d = cg.dir("memory")
    cgd = CgroupDir(str(d), False, Resolver(HostRoot()).layout.v1["memory"].mount_dir)
    snap = memory.snapshot(cgd, want_swap=True)
    assert snap.limit_bytes == 256 * MiB
    assert snap.swap is not None and snap.swap.limit_bytes == 128 * MiB


def test_exited_caller_gets_the_host_file(tree: CgroupTree) -> None:
    cg = tree.child("gone", memory_limit=96 * MiB)
    c = start_container(cg)
    r = Renderer(HostRoot(), ViewOptions())
    member = c.member
    assert _kv(r.render("proc/meminfo", member))["MemTotal"] == 96 * 1024
    c.stop()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{member}") and time.monotonic() < deadline:
        time.sleep(0.02)
    out = r.render("proc/meminfo", member).decode()
    with open("/proc/meminfo") as f:
        assert out.splitlines()[0] == f.readline().rstrip("\n")  # the host's MemTotal
    assert r.fallbacks.get(("proc/meminfo", "ProcessGone")) == 1


def test_a_thread_of_the_init_resolves_to_its_process(tree: CgroupTree) -> None:
    # FUSE reports the calling THREAD's id; a non-main thread of the namespace's init has NSpid "<tid> <n>"
    # with n != 1 and its PPid outside the namespace, so resolution must still land on the init.
    import sys

    cg = tree.child("thr", memory_limit=160 * MiB)
    script = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"
    files = [str(p) for p in cg.procs_files()]

    def enter() -> None:
        for f in files:
            with open(f, "w") as fh:
                fh.write(str(os.getpid()))

    p = subprocess.Popen(["unshare", "-p", "-f", "--kill-child", sys.executable, "-c", script], preexec_fn=enter)
    try:
        init = tid = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not tid:
            kids = children(p.pid)
            if kids:
                init = kids[0]
                tids = [int(t) for t in os.listdir(f"/proc/{init}/task") if int(t) != init]
                tid = tids[0] if tids else 0
            time.sleep(0.02)
        assert tid, "the init's second thread did not appear"
        r = Renderer(HostRoot(), ViewOptions())
        assert r.resolver.resolve(tid).init_pid == init
        assert _kv(r.render("proc/meminfo", tid))["MemTotal"] == 160 * 1024
    finally:
        p.kill()
        p.wait()
