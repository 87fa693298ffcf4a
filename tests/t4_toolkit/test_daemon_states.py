"""check-lxcfs / umount / remount / the hook against an absent, serving, SIGSTOPped and SIGKILLed daemon
(issue 3 check-lxcfs codes, issue 4 item 3 "no hangs"). Every command must return within its deadline; the test
process itself never touches a stopped daemon's mount (only mountinfo and the container's own /proc)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers as C
from support.meminfo import host_memtotal_kib, meminfo_kib
from t4_toolkit.conftest import HOOK, Env, read_in

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e]

CHECK_TIMEOUT = 2.0
TIMINGS: dict[str, float] = {}


@pytest.fixture
def own_daemon(tenv: Env, request: pytest.FixtureRequest) -> Iterator[C.Daemon]:
    impl = getattr(request, "param", None)
    d = C.start_daemon(tenv.base / f"lxcfs-{request.node.name.replace('[', '-').replace(']', '')}", impl=impl,
                       workdir=tenv.base)
    try:
        yield d
    finally:
        d.stop()


def _timed(tenv: Env, name: str, *args: str, lxcfs_dir: Path) -> tuple[int, str, float]:
    t = time.monotonic()
    r = tenv.toolkit(*args, lxcfs_dir=lxcfs_dir, timeout=120)
    elapsed = time.monotonic() - t
    TIMINGS[name] = round(elapsed, 3)
    (tenv.base / "timings.json").write_text(json.dumps(TIMINGS, indent=1))
    return r.returncode, r.stdout + r.stderr, elapsed


def _lxcfs_overlays(ct: C.Container) -> list[str]:
    return [m.mountpoint for m in ct.host_mountinfo() if m.is_lxcfs]


def test_check_absent_and_serving(tenv: Env) -> None:
    empty = tenv.base / "empty-dir"
    empty.mkdir()
    assert tenv.toolkit("check-lxcfs", lxcfs_dir=empty).returncode == 1
    assert tenv.toolkit("check-lxcfs", lxcfs_dir=tenv.base / "does-not-exist").returncode == 1
    r = tenv.toolkit("check-lxcfs", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["health"] == "serving"


def test_sigstopped_daemon_never_hangs_anything(tenv: Env, own_daemon: C.Daemon) -> None:
    d = own_daemon.mountpoint
    ct = tenv.run("stopped-daemon", hook_stage="createRuntime", lxcfs_dir=d)
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    own_daemon.sigstop()
    try:
        rc, out, el = _timed(tenv, "check-lxcfs on SIGSTOPped daemon", "check-lxcfs", "--timeout",
                             str(CHECK_TIMEOUT), lxcfs_dir=d)
        assert rc == 4, out
        assert el < CHECK_TIMEOUT + 5
        rc, out, el = _timed(tenv, "remount -c on SIGSTOPped daemon", "remount", "-c", ct.id, lxcfs_dir=d)
        assert rc == 1 and "not ready" in out, out
        rc, out, el = _timed(tenv, "umount --all on SIGSTOPped daemon", "umount", "--all", "--timeout", "10",
                             lxcfs_dir=d)
        assert rc == 0, out
        assert el < 30, f"umount --all took {el:.1f}s"
        rc, out, el = _timed(tenv, "prestart on SIGSTOPped daemon", "prestart", lxcfs_dir=d)
        assert rc == 0 and "leaving it alone" in out, out
        assert el < CHECK_TIMEOUT + 5
        assert _lxcfs_overlays(ct) == []
        # The container reads host values again, with the daemon still stopped.
        assert meminfo_kib(read_in(ct, "/proc/meminfo", timeout=10)) == host_memtotal_kib()
        # A container started now is not blocked by the hook (fail-open): it starts, with host values.
        t = time.monotonic()
        ct2 = tenv.run("started-while-stopped", hook_stage="createRuntime", lxcfs_dir=d)
        TIMINGS["runc run with hook, SIGSTOPped daemon"] = round(time.monotonic() - t, 3)
        assert time.monotonic() - t < 20
        assert _lxcfs_overlays(ct2) == []
        assert meminfo_kib(read_in(ct2, "/proc/meminfo", timeout=10)) == host_memtotal_kib()
        log = (tenv.base / "hook.log").read_text()
        assert "lxcfs is not ready" in log and "container=started-while-stopped" in log
    finally:
        own_daemon.sigcont()
    # Once resumed, remount --all repairs both (both are registered by the hook).
    rc, out, _ = _timed(tenv, "remount --all after SIGCONT", "remount", "--all", lxcfs_dir=d)
    assert rc == 0, out
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    assert meminfo_kib(read_in(ct2, "/proc/meminfo")) == C.GIB // 1024
    ct.stop()
    ct2.stop()


@pytest.mark.parametrize("own_daemon", ["lxcfs"], indirect=True)
def test_sigkilled_daemon_stale_mount_then_recover(tenv: Env, own_daemon: C.Daemon) -> None:
    """C lxcfs as the reference crashing daemon: SIGKILL leaves a stale fuse.lxcfs mount (ENOTCONN)."""
    d = own_daemon.mountpoint
    ct = tenv.run("killed-daemon", hook_stage="createRuntime", lxcfs_dir=d)
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    own_daemon.kill()
    assert own_daemon.mounted(), "C lxcfs leaves its mount behind when SIGKILLed"
    r = ct.exec("cat", "/proc/meminfo")
    assert r.returncode != 0 and "not connected" in r.stderr, r  # what a crash does to a container
    rc, out, _ = _timed(tenv, "check-lxcfs on SIGKILLed daemon", "check-lxcfs", lxcfs_dir=d)
    assert rc == 5, out
    rc, out, _ = _timed(tenv, "umount --all on SIGKILLed daemon", "umount", "--all", lxcfs_dir=d)
    assert rc == 0, out
    assert _lxcfs_overlays(ct) == []
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == host_memtotal_kib()
    # The stop path's host-side clean-up, then a fresh daemon and the start path: virtual again.
    C.lazy_umount(d)
    own_daemon2 = C.start_daemon(d, impl="lxcfs", workdir=tenv.base)
    try:
        rc, out, _ = _timed(tenv, "remount --all after restart", "remount", "--all", lxcfs_dir=d)
        assert rc == 0, out
        assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    finally:
        own_daemon2.stop()
    ct.stop()


def test_sigkilled_default_daemon(tenv: Env, own_daemon: C.Daemon) -> None:
    """Whatever daemon the suite runs (ours by default): after SIGKILL of the whole daemon, check-lxcfs says dead
    (5) while a mount is left at the dir, absent (1) once it is gone (our daemon's watchdog lazily unmounts it);
    never 0, never a hang. The container's overlays are separate mounts and stay (stale) either way, until the
    stop path's `umount --all` gives it host values."""
    d = own_daemon.mountpoint
    ct = tenv.run("killed-default", hook_stage="createRuntime", lxcfs_dir=d)
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    own_daemon.kill()
    rc, out, el = _timed(tenv, f"check-lxcfs after SIGKILL ({own_daemon.impl})", "check-lxcfs", lxcfs_dir=d)
    if own_daemon.mounted():
        assert rc in (1, 5), out  # the watchdog may unmount between our two looks
    else:
        assert rc == 1, out
    assert el < CHECK_TIMEOUT + 5
    assert _lxcfs_overlays(ct), "the container's overlays should still be there (stale)"
    rc, out, el = _timed(tenv, f"umount --all after SIGKILL ({own_daemon.impl})", "umount", "--all", lxcfs_dir=d)
    assert rc == 0 and el < 30, out
    assert _lxcfs_overlays(ct) == []
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == host_memtotal_kib()
    ct.stop()


def test_strict_hook_blocks_the_start_and_default_does_not(tenv: Env) -> None:
    empty = tenv.base / "no-daemon-here"
    empty.mkdir(exist_ok=True)
    b = tenv.bundle("strict-hook")
    b.add_hook("createRuntime", HOOK, tenv.hook_args("createRuntime", "--strict", lxcfs_dir=empty), timeout=20)
    with pytest.raises(RuntimeError, match="hook"):
        tenv.runtime.run("strict-hook", b)
    tenv.runtime.delete("strict-hook")
    ct = tenv.run("lenient-hook", hook_stage="createRuntime", lxcfs_dir=empty)
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == host_memtotal_kib()
    log = (tenv.base / "hook.log").read_text()
    assert "container=lenient-hook" in log and "nothing is mounted" in log
    ct.stop()
