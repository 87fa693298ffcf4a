"""Tier 4 (issue 4) with real runc containers: lxcfs-hook at createRuntime bind-mounts our files into a
busybox container (1 GiB memory limit) whose init is a loop reading /proc/meminfo every 50 ms and logging
each result with CLOCK_MONOTONIC timestamps (a static helper compiled here; no time namespace, so the
container's clock is the test's `time.monotonic()`). We break the daemon in each of issue 4's
ways and check what the container saw. Expectations come from the limit we set (MemTotal 1048576 kB)
and from the host's /proc/meminfo, never from our daemon's output.

Each scenario prints its reads, errors and longest read (SCENARIO {...} on stderr; appended to
$PYLXCFS_T4_RESULTS when set)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import containers as C
from support.fusedaemon import Daemon, alive, mountinfo_entry, record_result, start_daemon, wait_for

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e, pytest.mark.slow]

HOOK = str(C.VENV_BIN / "lxcfs-hook")
TOOLKIT = str(C.VENV_BIN / "isulad-lxcfs-toolkit")
VIRTUAL_TOTAL = "1048576"  # kB: the container's memory limit (1 GiB)

# One read per line: "<t0> <t1> OK <MemTotal value>" or "<t0> <t1> ERR <message>". The stamps are CLOCK_MONOTONIC:
# the wall clock (busybox adjtimex, time.monotonic()) may step on a shared VM, and did once (a read logged with
# t1 < t0, counted on the wrong side of an event).
LOOP = r"""
now() { monotime; }
while :; do
  t0=$(now)
  if cat /proc/meminfo >/tmp/m 2>/tmp/e; then r="OK $(awk '/^MemTotal:/{print $2}' /tmp/m)"
  else r="ERR $(tr '\n' ' ' </tmp/e)"; fi
  t1=$(now)
  echo "$t0 $t1 $r"
  usleep 50000
done
"""


MONOTIME_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 1;
    printf("%lld.%06ld", (long long)ts.tv_sec, ts.tv_nsec / 1000);
    return 0;
}
"""


def build_monotime(base: Path) -> Path:
    """A static `monotime` binary (prints CLOCK_MONOTONIC as seconds.micros) for the busybox rootfs."""
    src, out = base / "monotime.c", base / "monotime"
    src.write_text(MONOTIME_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
    return out


def host_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return line.split()[1]
    raise AssertionError("no MemTotal")


@dataclass
class Read:
    t0: float
    t1: float
    ok: bool
    value: str


@dataclass
class Env:
    base: Path
    runtime: C.Runtime
    cgroup: str
    lxcfs: Path
    registry: Path
    monotime: Path
    n: int = 0

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e.update(PYLXCFS_STATE_ROOTS=f"runc:{self.runtime.root}", PYLXCFS_REGISTRY_DIR=str(self.registry),
                 PYLXCFS_PROCSCAN="0")
        return e

    def toolkit(self, *args: str, timeout: float = 60) -> tuple[int, float, str]:
        t = time.monotonic()
        r = subprocess.run([TOOLKIT, "--lxcfs-dir", str(self.lxcfs), *args], env=self.env(), capture_output=True,
                           text=True, timeout=timeout, check=False)
        return r.returncode, time.monotonic() - t, r.stdout + r.stderr

    def container(self) -> tuple[C.Container, Path]:
        self.n += 1
        name = f"sv{self.n}"
        b = C.make_bundle(self.base, name, memory_bytes=C.GIB, cpus="0", cgroup_parent=self.cgroup,
                          args=["sh", "-c", LOOP])
        shutil.copy2(self.monotime, b.rootfs / "bin" / "monotime")
        b.add_hook("createRuntime", HOOK, ["lxcfs-hook", "--stage", "createRuntime", "--lxcfs-dir", str(self.lxcfs),
                                           "--registry-dir", str(self.registry), "--log",
                                           str(self.base / "hook.log")], timeout=20)
        ct = self.runtime.run(name, b)
        return ct, b.path / f"{name}.log"


def reads(log: Path) -> list[Read]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in ("OK", "ERR"):
            out.append(Read(float(parts[0]), float(parts[1]), parts[2] == "OK", parts[3].strip()))
    return out


def summary(name: str, rs: list[Read], **extra: object) -> dict[str, object]:
    return {"scenario": name, "reads": len(rs), "errors": sum(not r.ok for r in rs),
            "longest_read_ms": round(max((r.t1 - r.t0 for r in rs), default=0) * 1000, 1), **extra}


@pytest.fixture(scope="module")
def cenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    assert os.geteuid() == 0 and C.BUSYBOX.exists() and os.path.exists("/dev/fuse")
    base = tmp_path_factory.mktemp("supervisor")
    env = Env(base, C.Runtime(base / "runc-root"), C.cgroup_parent_name("supervisor"), base / "lxcfs",
              base / "registry", build_monotime(base))
    try:
        yield env
    finally:
        env.runtime.cleanup()
        C.remove_cgroup_parent(env.cgroup)


@pytest.fixture
def daemon(cenv: Env) -> Iterator[Daemon]:
    # One worker: these scenarios are the single-worker worst cases (the pool has its own tests).
    d = start_daemon(cenv.base, "--workers", "1", mnt=cenv.lxcfs, name=f"d{cenv.n}")
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def loop(cenv: Env, daemon: Daemon) -> Iterator[tuple[C.Container, Path]]:
    ct, log = cenv.container()
    try:
        wait_for(lambda: sum(r.ok for r in reads(log)) >= 5, 20, "the container's first reads")
        assert all(r.ok and r.value == VIRTUAL_TOTAL for r in reads(log)), reads(log)[:3]
        yield ct, log
    finally:
        for p in [*daemon.workers(), daemon.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        ct.stop()


def test_ct_worker_sigkill(cenv: Env, daemon: Daemon, loop: tuple[C.Container, Path], tmp_path: Path) -> None:
    _ct, log = loop
    kills = []
    for _ in range(3):
        old = daemon.worker()
        t_kill = time.monotonic()
        kills.append(t_kill)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda o=old: daemon.workers() not in ([], [o]), 2, "a new worker")
        # 10 reads more than 2 s after each kill: served by the replacement (a count, not a time window: the
        # container's loop slows down on a loaded machine)
        wait_for(lambda t=t_kill: sum(r.t0 > t + 2 for r in reads(log)) >= 10, 30, "reads 2 s after the kill")
    rs = reads(log)
    record_result(tmp_path, summary("container: worker SIGKILL x3", rs))
    assert [r for r in rs if not r.ok] == []  # no ENOTCONN, ever
    late = [r for r in rs if r.t0 > kills[-1] + 2]
    assert len(late) >= 10 and all(r.value == VIRTUAL_TOTAL for r in late)
    assert all(r.value == VIRTUAL_TOTAL for r in rs)


def test_ct_sighup_reload(cenv: Env, daemon: Daemon, loop: tuple[C.Container, Path], tmp_path: Path) -> None:
    _ct, log = loop
    for _ in range(3):
        before = daemon.worker()
        os.kill(daemon.pid, signal.SIGHUP)
        wait_for(lambda b=before: daemon.workers() not in ([], [b]) and len(daemon.workers()) == 1, 15,
                 "the reload to complete")
        n = len(reads(log))
        wait_for(lambda n=n: len(reads(log)) >= n + 10, 20, "reads after the reload")
    rs = reads(log)
    record_result(tmp_path, summary("container: SIGHUP reload x3", rs))
    assert [r for r in rs if not r.ok] == []
    assert all(r.value == VIRTUAL_TOTAL for r in rs)


def test_ct_supervisor_sigkill_restart_adopts(cenv: Env, daemon: Daemon, loop: tuple[C.Container, Path],
                                             tmp_path: Path) -> None:
    """Supervisor SIGKILL under the container's read loop, then a new pylxcfs on the same mount point (no stop
    path, no remount): the orphaned worker serves meanwhile, the new supervisor adopts the connection and
    replaces it. Not one read fails and every read shows the container's limit."""
    _ct, log = loop
    orphan = daemon.worker()
    t_kill = time.monotonic()
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait(5)
    wait_for(lambda: sum(r.t0 > t_kill for r in reads(log)) >= 10, 20, "reads after the supervisor's death")
    assert mountinfo_entry(cenv.lxcfs) is not None
    d2 = start_daemon(cenv.base, mnt=cenv.lxcfs, name="adopter")
    try:
        wait_for(lambda: not alive(orphan), 15, "the orphaned worker retired")
        t_adopted = time.monotonic()
        wait_for(lambda: sum(r.t0 > t_adopted for r in reads(log)) >= 10, 20, "reads after the adoption")
        rs = reads(log)
        record_result(tmp_path, summary("container: supervisor SIGKILL, restart adopts", rs,
                                        reads_after_kill=sum(r.t0 > t_kill for r in rs)))
        assert [r for r in rs if not r.ok] == []  # no ENOTCONN, ever
        assert all(r.value == VIRTUAL_TOTAL for r in rs)
        assert "adopted the connection" in d2.log_text()
    finally:
        d2.stop()


def test_ct_all_processes_sigkill_stop_and_start_paths(cenv: Env, daemon: Daemon, loop: tuple[C.Container, Path],
                                                       tmp_path: Path) -> None:
    """The fallback when nothing can serve: supervisor and worker SIGKILLed."""
    _ct, log = loop
    workers = daemon.workers()
    os.kill(daemon.pid, signal.SIGKILL)
    for w in workers:
        os.kill(w, signal.SIGKILL)
    daemon.proc.wait(5)
    # The watchdog removes the dead host mount; the container's binds stay dead until the stop path.
    wait_for(lambda: mountinfo_entry(cenv.lxcfs) is None, 5, "no stale mount on the host")
    rc, took_umount, out = cenv.toolkit("umount", "--all")
    assert rc == 0, out
    t_stop = time.monotonic()
    wait_for(lambda: sum(r.t0 > t_stop for r in reads(log)) >= 10, 20, "reads after the stop path")
    host = host_total()
    after_stop = [r for r in reads(log) if r.t0 > t_stop]
    assert all(r.ok and r.value == host for r in after_stop), after_stop[:3]
    assert mountinfo_entry(cenv.lxcfs) is None  # nothing stale left on the host

    d2 = start_daemon(cenv.base, mnt=cenv.lxcfs, name="restarted")
    try:
        rc, took_remount, out = cenv.toolkit("remount", "--all")
        assert rc == 0, out
        t_start = time.monotonic()
        wait_for(lambda: sum(r.t0 > t_start for r in reads(log)) >= 10, 20, "reads after the start path")
        rs = reads(log)
        after_start = [r for r in rs if r.t0 > t_start]
        assert all(r.ok and r.value == VIRTUAL_TOTAL for r in after_start), after_start[:3]
        window = [r for r in rs if r.t0 <= t_stop]
        record_result(tmp_path, summary("container: all processes SIGKILL, umount --all, restart, remount --all", rs,
                                        errors_before_stop_path=sum(not r.ok for r in window),
                                        errors_after_stop_path=sum(not r.ok for r in rs if r.t0 > t_stop),
                                        umount_s=round(took_umount, 2), remount_s=round(took_remount, 2)))
        assert all(r.ok for r in rs if r.t0 > t_stop)
    finally:
        cenv.toolkit("umount", "--all")
        d2.stop()


def test_ct_sigstopped_daemon(cenv: Env, daemon: Daemon, loop: tuple[C.Container, Path], tmp_path: Path) -> None:
    ct, log = loop
    procs = [daemon.pid, *daemon.workers()]
    for p in procs:
        os.kill(p, signal.SIGSTOP)
    try:
        time.sleep(0.3)
        rc_check, took_check, out = cenv.toolkit("check-lxcfs", timeout=40)
        assert took_check < 30 and rc_check != 0, out
        rc, took_umount, out = cenv.toolkit("umount", "--all", timeout=40)
        assert took_umount < 30 and rc == 0, out
        # New reads in the container get the host's file (the loop's own cat stays blocked until SIGCONT).
        assert ct.exec("awk", "/^MemTotal:/{print $2}", "/proc/meminfo", timeout=20, check=True).stdout.strip() == \
            host_total()
    finally:
        for p in procs:
            os.kill(p, signal.SIGCONT)
    t_cont = time.monotonic()
    wait_for(lambda: sum(r.t0 > t_cont for r in reads(log)) >= 5, 20, "the loop resuming")
    rs = reads(log)
    record_result(tmp_path, summary("container: SIGSTOP daemon, check-lxcfs + umount --all", rs,
                                    check_lxcfs_rc=rc_check, check_lxcfs_s=round(took_check, 2),
                                    umount_s=round(took_umount, 2)))
    assert [r for r in rs if not r.ok] == []
    assert all(r.value == host_total() for r in rs if r.t0 > t_cont)
