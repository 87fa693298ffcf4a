"""REAL test on this machine (root, hybrid cgroup v1): a child in a new pid namespace inside v1 cpuset, cpu
and cpuacct cgroups this test creates. Expectations come from the limits set here and from the kernel's own
files (host /proc/cpuinfo, cpuacct.usage_all), never from our output.

Touches only /sys/fs/cgroup/{cpuset,cpu,cpuacct}/pylxcfs-test-cpu-<pid>/ and removes it (members killed
first) in the fixture's finalizer.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylxcfs.context import CgroupDir, ContainerContext, ViewEnv, ViewOptions
from pylxcfs.hostfs import HostRoot
from pylxcfs.parse.stat import parse_stat
from pylxcfs.service import Renderer
from pylxcfs.views import cpuinfo, stat, sys_cpu

pytestmark = pytest.mark.root

CG = Path("/sys/fs/cgroup")
CTRLS = ("cpuset", "cpu", "cpuacct")
HZ = os.sysconf("SC_CLK_TCK")


def _require_v1() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (the brief's machine runs tests as root)")
    missing = [c for c in CTRLS if not (CG / c / "cgroup.procs").is_file()]
    if missing:
        pytest.fail(f"v1 hierarchies missing: {missing} (this machine kind has them)")


class Cgroups:
    """pylxcfs-test-cpu-<pid>/<name> in the cpuset, cpu and cpuacct v1 hierarchies."""

    def __init__(self) -> None:
        self.parent = f"pylxcfs-test-cpu-{os.getpid()}"
        self.made: list[Path] = []
        for c in CTRLS:
            self._mk(CG / c / self.parent)
        top = CG / "cpuset" / self.parent
        # cpusets.rst: a cpuset refuses tasks until cpuset.cpus and cpuset.mems are set; copy the root's.
        (top / "cpuset.cpus").write_text((CG / "cpuset" / "cpuset.cpus").read_text().strip())
        (top / "cpuset.mems").write_text((CG / "cpuset" / "cpuset.mems").read_text().strip())

    def _mk(self, p: Path) -> None:
        p.mkdir()
        self.made.append(p)

    def child(self, name: str, cpus: str, quota_us: int | None = None) -> str:
        rel = f"{self.parent}/{name}"
        for c in CTRLS:
            self._mk(CG / c / rel)
        d = CG / "cpuset" / rel
        (d / "cpuset.mems").write_text((CG / "cpuset" / self.parent / "cpuset.mems").read_text().strip())
        (d / "cpuset.cpus").write_text(cpus)
        if quota_us is not None:
            (CG / "cpu" / rel / "cpu.cfs_period_us").write_text("100000")
            (CG / "cpu" / rel / "cpu.cfs_quota_us").write_text(str(quota_us))
        return rel

    def cleanup(self) -> None:
        for p in reversed(self.made):
            for _ in range(50):
                pids = [int(x) for x in (p / "cgroup.procs").read_text().split()] if p.exists() else []
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    p.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    _require_v1()
    cg = Cgroups()
    try:
        yield cg
    finally:
        cg.cleanup()


def spawn_init(rel: str, script: str) -> tuple[subprocess.Popen[bytes], int]:
    """`unshare --pid --fork sh -c script` with the launcher moved into `rel` in every hierarchy before exec;
    returns the launcher and the host pid of the new namespace's PID 1."""
    procs = [str(CG / c / rel / "cgroup.procs") for c in CTRLS]

    def enter() -> None:
        for f in procs:
            with open(f, "w") as fh:
                fh.write(str(os.getpid()))

    p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", script], preexec_fn=enter)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        if kids:
            init = int(kids[0])
            status = Path(f"/proc/{init}/status").read_text()
            if re.search(r"^NSpid:\s+\d+\s+1$", status, re.M):
                return p, init
        time.sleep(0.01)
    p.kill()
    pytest.fail("the pid-namespace init did not appear")


def ctx_for(rel: str, init: int) -> ContainerContext:
    start = int(Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22

    def d(c: str) -> CgroupDir:
        return CgroupDir(str(CG / c / rel), False, str(CG / c))

    return ContainerContext(init, init, start, None, d("cpu"), d("cpuacct"), d("cpuset"), None)


def host_block(n: int) -> str:
    text = Path("/proc/cpuinfo").read_text()
    return next(b for b in text.split("\n\n") if b.startswith(f"processor\t: {n}\n"))


def test_cpuset_0_one_processor_online_0_and_real_usage(cgroups: Cgroups) -> None:
    rel = cgroups.child("one", "0")
    # burn a little CPU (so the cgroup's usage is not zero), then idle until killed
    launcher, init = spawn_init(rel, "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; exec sleep 60")
    try:
        env = ViewEnv(HostRoot(), ViewOptions())
        ctx = ctx_for(rel, init)
        info = cpuinfo.produce(env, ctx)
        assert re.findall(r"^processor\t: (\d+)$", info, re.M) == ["0"]
        assert "apicid\t\t: 0\n" in info  # it is host CPU 0's block ...
        expected = host_block(0)  # ... with the seed's topology rule applied
        for key, val in (("siblings\t", "1"), ("core id\t\t", "0"), ("cpu cores\t", "1"), ("physical id\t", "0")):
            expected = re.sub(rf"^{key}: \d+$", f"{key}: {val}", expected, flags=re.M)
        got = info.split("\n\n")[0]
        # cpu MHz may differ between two reads of the host file on real hardware; compare the rest
        strip = re.compile(r"^cpu MHz.*$", re.M)
        assert strip.sub("", got) == strip.sub("", expected)
        assert sys_cpu.produce_list(env, ctx, "online") == "0\n"

        # wait until the burn is over (the init then sleeps), then compare with the kernel's counters
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{init}/cmdline").read_bytes().startswith(b"sleep\0"):
            assert time.monotonic() < deadline, "the burn loop did not finish"
            time.sleep(0.02)
        usage = (CG / "cpuacct" / rel / "cpuacct.usage_all").read_text().split("\n")[1].split()
        s = parse_stat(stat.produce(env, ctx))
        assert list(s.per_cpu) == [0]
        row = s.per_cpu[0]
        assert row[0] == int(usage[1]) * HZ // 10**9 and row[2] == int(usage[2]) * HZ // 10**9
        assert row[0] + row[2] > 0  # the burn was accounted
        assert s.total == row
        # btime is the host's (start times in /proc/<pid>/stat count from the host's boot)
        host_btime = parse_stat(Path("/proc/stat").read_text()).btime
        assert host_btime is not None and s.btime == host_btime
    finally:
        launcher.kill()
        launcher.wait()


def test_cfs_half_cpu_shows_one_cpu(cgroups: Cgroups) -> None:
    all_cpus = (CG / "cpuset" / "cpuset.effective_cpus").read_text().strip()
    rel = cgroups.child("half", all_cpus, quota_us=50000)
    launcher, init = spawn_init(rel, "exec sleep 60")
    try:
        ctx = ctx_for(rel, init)
        view = ViewEnv(HostRoot(), ViewOptions(enable_cfs=True))
        assert sys_cpu.produce_list(view, ctx, "online") == "0\n"  # the first CPU of the cpuset
        assert cpuinfo.produce(view, ctx).count("processor\t:") == 1
        assert list(parse_stat(stat.produce(view, ctx)).per_cpu) == [0]
        # without --enable-cfs every CPU of the cpuset is shown
        plain = ViewEnv(HostRoot(), ViewOptions())
        ncpu = len(Path("/proc/cpuinfo").read_text().split("processor\t:")) - 1
        assert cpuinfo.produce(plain, ctx).count("processor\t:") == ncpu
        assert sys_cpu.produce_list(plain, ctx, "online") == all_cpus + "\n"
    finally:
        launcher.kill()
        launcher.wait()


def test_through_renderer(cgroups: Cgroups) -> None:
    """The same checks through pylxcfs.service.Renderer and core's real resolver (caller = the ns init)."""
    rel = cgroups.child("rend", "0", quota_us=50000)
    launcher, init = spawn_init(rel, "exec sleep 60")
    try:
        r = Renderer(HostRoot(), ViewOptions())
        info = r.render("proc/cpuinfo", init).decode()
        assert re.findall(r"^processor\t: (\d+)$", info, re.M) == ["0"]
        assert r.render("sys/devices/system/cpu/online", init) == b"0\n"
        assert list(parse_stat(r.render("proc/stat", init).decode()).per_cpu) == [0]
        assert not r.fallbacks, r.fallbacks
        rc = Renderer(HostRoot(), ViewOptions(enable_cfs=True))
        assert rc.render("sys/devices/system/cpu/online", init) == b"0\n"
        assert rc.render("proc/cpuinfo", init).decode().count("processor\t:") == 1
        assert not rc.fallbacks, rc.fallbacks
    finally:
        launcher.kill()
        launcher.wait()
