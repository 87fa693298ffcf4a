"""procs/resolve.py over fixture trees (the same code as on the live host: /proc/<pid>/ns/pid links are symlinks
there) and the Renderer's fallback policy with fake resolvers and a missing view module."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from pylxcfs.context import CgroupDir, ContainerContext
from pylxcfs.errors import NotInContainer, ProcessGone
from pylxcfs.hostfs import HostRoot
from pylxcfs.procs.resolve import Resolver
from pylxcfs.service import Renderer, ViewOptions
from support.hosts import HOSTS


def test_caller_resolves_to_its_namespace_init() -> None:
    root = HostRoot.from_dir(HOSTS / "x86_64-legacy-centos7")
    ctx = Resolver(root).resolve(4243)
    assert ctx.caller_pid == 4243 and ctx.init_pid == 4242
    assert ctx.init_start_ticks == 8000000
    assert ctx.memory == CgroupDir(f"{root.cgroup}/memory/docker/ct1", False, f"{root.cgroup}/memory")
    assert ctx.cpu is not None and ctx.cpuacct is not None and ctx.cpu.path == ctx.cpuacct.path
    assert ctx.cpu.path == f"{root.cgroup}/cpu,cpuacct/docker/ct1"
    assert ctx.cpuset is not None and ctx.blkio is not None


def test_init_itself_resolves_to_itself() -> None:
    ctx = Resolver(HostRoot.from_dir(HOSTS / "x86_64-hybrid-debian12")).resolve(4242)
    assert ctx.init_pid == 4242
    assert ctx.memory is not None and ctx.memory.path.endswith("/sys/fs/cgroup/memory/lxc/ct")


def test_unified_all_controllers_in_one_dir() -> None:
    root = HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22")
    ctx = Resolver(root).resolve(4243)
    want = f"{root.cgroup}/system.slice/docker-abc.scope"
    for d in (ctx.memory, ctx.cpu, ctx.cpuacct, ctx.cpuset, ctx.blkio):
        assert d is not None and d.v2 and d.path == want and d.mount_root == root.cgroup


def test_host_caller_is_not_in_a_container() -> None:
    with pytest.raises(NotInContainer):
        Resolver(HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22")).resolve(100)


def test_pid_zero_is_not_in_a_container() -> None:
    # fuse_get_context() reports pid 0 for a caller invisible from our pid namespace
    with pytest.raises(NotInContainer):
        Resolver(HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22")).resolve(0)


def test_vanished_pid() -> None:
    with pytest.raises(ProcessGone):
        Resolver(HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22")).resolve(99999)


def _proc(top: Path, pid: int, ppid: int, nspid: str, ns: int, start: int = 1000) -> None:
    p = top / "proc" / str(pid)
    (p / "ns").mkdir(parents=True)
    (p / "status").write_text(f"PPid:\t{ppid}\nNSpid:\t{nspid}\n")
    (p / "stat").write_text(f"{pid} (sh) S {ppid}" + " 0" * 17 + f" {start}" + " 0" * 30 + "\n")
    (p / "cgroup").write_text("0::/ct\n")
    (p / "ns" / "pid").symlink_to(f"pid:[{ns}]")


def _tree(top: Path) -> Path:
    (top / "proc/self/ns").mkdir(parents=True)
    (top / "proc/self/ns/pid").symlink_to("pid:[4026531836]")
    (top / "proc/self/mountinfo").write_text("35 23 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    (top / "sys/fs/cgroup/ct").mkdir(parents=True)
    return top


def test_broken_chain_without_init(tmp_path: Path) -> None:
    # A caller in another namespace whose init is nowhere: the kernel tears a namespace down with its init, so
    # this is a race with the container's exit.
    _proc(_tree(tmp_path), 77, 0, "77\t5", 4026532077)
    with pytest.raises(ProcessGone, match="no init"):
        Resolver(HostRoot.from_dir(tmp_path)).resolve(77)


def test_caller_entered_by_setns_is_found_by_scan(tmp_path: Path) -> None:
    # `runc exec`: the caller's parent is a host process, so the PPid chain leaves the namespace before the init;
    # the scan of proc finds the task of the caller's namespace whose NSpid ends in 1.
    _tree(tmp_path)
    _proc(tmp_path, 50, 1, "50", 4026531836)  # the host's runc
    _proc(tmp_path, 60, 1, "60\t1", 4026532060, start=777)  # the container's init
    _proc(tmp_path, 61, 50, "61\t9", 4026532060)  # the exec'd caller
    ctx = Resolver(HostRoot.from_dir(tmp_path)).resolve(61)
    assert ctx.init_pid == 60 and ctx.init_start_ticks == 777
    with pytest.raises(NotInContainer):
        Resolver(HostRoot.from_dir(tmp_path)).resolve(50)


def test_cached_init_revalidated_after_pid_reuse(tmp_path: Path) -> None:
    # The init cache is per namespace and checked by /proc/<init>'s inode, then by start time: an init replaced
    # by another process under the same pid (new start time) is resolved again, not served from the cache.
    _tree(tmp_path)
    _proc(tmp_path, 60, 1, "60\t1", 4026532060, start=777)
    _proc(tmp_path, 61, 60, "61\t2", 4026532060)
    r = Resolver(HostRoot.from_dir(tmp_path))
    assert r.resolve(61).init_start_ticks == 777
    import shutil
    shutil.rmtree(tmp_path / "proc/60")
    _proc(tmp_path, 60, 1, "60\t1", 4026532060, start=999)
    assert r.resolve(61).init_start_ticks == 999


def test_tree_without_namespace_links_is_an_error(tmp_path: Path) -> None:
    # No proc/self/ns/pid: nothing can tell a container caller from a host caller, so no guess is made.
    (tmp_path / "proc/77").mkdir(parents=True)
    (tmp_path / "proc/77/status").write_text("PPid:\t0\nNSpid:\t77\t5\n")
    with pytest.raises(FileNotFoundError):
        Resolver(HostRoot.from_dir(tmp_path)).resolve(77)


# ---------------------------------------------------------------- Renderer policy with fakes

class _FakeResolver:
    def __init__(self, exc: Exception | None = None, ctx: ContainerContext | None = None) -> None:
        self.exc, self.ctx, self.calls = exc, ctx, 0

    def resolve(self, pid: int) -> ContainerContext:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        assert self.ctx is not None
        return self.ctx


def test_renderer_uses_the_injected_resolver() -> None:
    host = HOSTS / "x86_64-unified-ubuntu22"
    real = Resolver(HostRoot.from_dir(host)).resolve(4243)
    fake = _FakeResolver(ctx=real)
    r = Renderer(HostRoot.from_dir(host), ViewOptions(), resolver=fake)
    assert r.render("proc/uptime", 1) == b"3000.50 2970.50\n"
    assert fake.calls == 1


@pytest.mark.parametrize("exc", [NotInContainer("host"), ProcessGone("gone")])
def test_expected_failures_serve_host_quietly(exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    host = HOSTS / "x86_64-unified-ubuntu22"
    r = Renderer(HostRoot.from_dir(host), ViewOptions(), resolver=_FakeResolver(exc))
    with caplog.at_level(logging.WARNING):
        assert r.render("proc/meminfo", 5) == (host / "proc/meminfo").read_bytes()
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


def test_unexpected_failure_serves_host_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    host = HOSTS / "x86_64-unified-ubuntu22"
    r = Renderer(HostRoot.from_dir(host), ViewOptions(), resolver=_FakeResolver(RuntimeError("boom")))
    with caplog.at_level(logging.WARNING, logger="pylxcfs.service"):
        for _ in range(5):
            assert r.render("proc/uptime", 321) == (host / "proc/uptime").read_bytes()
        assert r.render("proc/swaps", 321) == (host / "proc/swaps").read_bytes()
    msgs = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(msgs) == 2  # one per (view, exception type)
    assert "proc/uptime" in msgs[0] and "321" in msgs[0] and "RuntimeError" in msgs[0] and "boom" in msgs[0]
    assert r.fallbacks[("proc/uptime", "RuntimeError")] == 5


@pytest.mark.parametrize(("module", "function", "why"), [
    ("no_such_view_module", "produce", "cannot import pylxcfs.views.no_such_view_module"),
    ("meminfo", "no_such_function", "has no function no_such_function()"),
    ("sys_cpu", "LISTS", "has no function LISTS()"),  # exists, but is not callable
])
def test_a_row_that_cannot_be_served_fails_at_start(monkeypatch: pytest.MonkeyPatch, module: str, function: str,
                                                     why: str) -> None:
    from pylxcfs import service
    from pylxcfs.errors import RegistryError
    from pylxcfs.views import registry

    monkeypatch.setattr(service, "VIEWS", (*registry.VIEWS, registry.ViewSpec("proc/meminfo", module, function)))
    with pytest.raises(RegistryError, match=re.escape(why)):
        Renderer(HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22"), ViewOptions())


def test_a_tree_whose_filter_is_missing_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from pylxcfs import service
    from pylxcfs.errors import RegistryError
    from pylxcfs.views import registry

    monkeypatch.setattr(service, "TREES", (registry.TreeSpec("sys/devices/system/cpu", "sys_cpu", "nope"),))
    with pytest.raises(RegistryError, match="sys/devices/system/cpu"):
        service.load_registry()


def test_unknown_path_raises_keyerror() -> None:
    r = Renderer(HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22"), ViewOptions())
    with pytest.raises(KeyError):
        r.render("proc/nonexistent", 4243)


def test_every_registry_view_renders_something_for_a_container() -> None:
    # whatever the other areas' views do, the Renderer never raises for a known path
    for host in sorted(p.name for p in HOSTS.iterdir()):
        r = Renderer(HostRoot.from_dir(HOSTS / host), ViewOptions())
        for path in r.paths():
            assert isinstance(r.render(path, 4243), bytes)
