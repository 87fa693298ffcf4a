"""An unprivileged tenant cannot freeze the daemon through partitions/diskstats (docs/disks.md, "Tenant safety").

Each attack runs as `nobody` in a user + pid + mount namespace (setpriv ... unshare -Urmpf, tests/t3_disks/
tenant.py) against a real mounted daemon: the tenant's init makes its root or /dev something that blocks (a
chroot into the daemon's own mount, an overlay whose upperdir= string goes through it, a stopped FUSE server as
root, as /dev, bound over a /dev node), then a sibling reads proc/partitions and proc/diskstats. Before these
changes the daemon's only worker looked the caller's root up in the host namespace and waited on itself forever
(every open from every container then hung). Asserted: the tenant gets its answer; a host reader loop is never
stalled 2 s or more; an honest container is served its own view during and after.

This host's /dev/fuse is root-only (no udev); the test makes a world-usable node of the same device inside its
own directory, which the tenant binds over /dev/fuse in its own mount namespace: what any host with the usual
0666 /dev/fuse gives a tenant.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fusedaemon import Daemon, ReaderLoop, descendants, start_daemon

from .conftest import Container, Loop

pytestmark = [pytest.mark.root, pytest.mark.fuse]

TENANT = Path(__file__).with_name("tenant.py")
SYSTEM_PY = "/usr/bin/python3"  # the tenant runs as nobody: not the test venv under /work
STALL_S = 2.0
MODES = ("chroot-proc", "overlay-up", "fuse-root", "fuse-dev", "fuse-node")
HEADER = "major minor  #blocks  name\n\n"


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A tenant-owned directory /tmp/pylxcfs-test-disks-XXXX (the pytest tmp dirs are root-only 0700) holding
    the daemon's mount point `mnt`."""
    if os.geteuid() != 0:
        pytest.fail("needs root")
    for tool in ("setpriv", "unshare", "fuse-overlayfs"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed (Makefile APT_TEST)")
    d = Path(tempfile.mkdtemp(prefix="pylxcfs-test-disks-"))
    try:
        d.chmod(0o755)
        (d / "mnt").mkdir()
        os.mknod(d / "fuse", 0o666 | 0o020000, os.makedev(10, 229))
        os.chmod(d / "fuse", 0o666)
        os.chown(d, 65534, -1)
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d / "mnt")], check=False, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("disks-attack"), mnt=base / "mnt", name="attack")
    try:
        yield d
    finally:
        d.stop()


def _tenant(base: Path, mode: str, *extra: str, timeout: float = 60) -> dict[str, object]:
    """Run one attack; the sibling's JSON line. A tenant still running at `timeout` is SIGKILLed (unshare
    --kill-child takes its pid namespace down; FUSE waits are killable) and reported as hung."""
    cmd = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
           "unshare", "-Urmpf", "--kill-child", SYSTEM_PY, str(TENANT), mode, str(base / "mnt"), str(base), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a sibling still holds the pipe: report without its output
            out, err = b"", b"(no output: the tenant's processes did not die within 30 s)"
        pytest.fail(f"{mode}: the tenant's reads did not come back within {timeout} s (daemon wedged?): "
                    f"{out.decode()[-2000:]} {err.decode()[-2000:]}")
    lines = [json.loads(ln) for ln in out.decode().splitlines() if ln.startswith("{")]
    got = next((r for r in lines if "pid" in r), None)
    assert got is not None and proc.returncode == 0, (mode, proc.returncode, out.decode(), err.decode())
    return got


def _honest_view(ct: Container, mnt: Path) -> str:
    """proc/partitions as the honest container's process reads it, within STALL_S."""
    r = subprocess.run(["nsenter", "-t", str(ct.init_pid), "-p", "--", "cat", f"{mnt}/proc/partitions"],
                       capture_output=True, text=True, timeout=STALL_S)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.slow
def test_attacks_leave_everyone_served(base: Path, daemon: Daemon, container: Container,
                                       tmp_path: Path) -> None:
    mnt = base / "mnt"
    before = _honest_view(container, mnt)
    assert " xvdb" in before and " sda" in before, before
    loop = ReaderLoop(mnt / "proc" / "uptime", tmp_path / "host-reads.jsonl", interval=0.05)
    try:
        for mode in MODES:
            got = _tenant(base, mode)
            # The tenant gets its own (empty) view: no root device, no /dev it may have us look into.
            assert got.get("partitions") == HEADER, (mode, got)
            assert got.get("diskstats") == "", (mode, got)
            assert float(got["partitions_s"]) < STALL_S, (mode, got)  # type: ignore[arg-type]
            assert _honest_view(container, mnt) == before, mode
            assert daemon.proc.poll() is None
    finally:
        res = loop.stop()
    assert res.reads >= 5 and not res.errors, res.summary("attacks")
    assert res.longest_s < STALL_S, res.summary("attacks")
    # After: the daemon still answers the host and the container, and its worker is the one it started with.
    assert _honest_view(container, mnt) == before
    r = subprocess.run(["cat", f"{mnt}/proc/partitions"], capture_output=True, text=True, timeout=STALL_S)
    assert r.stdout == Path("/proc/partitions").read_text()


@pytest.mark.slow
def test_huge_dev_is_bounded_and_still_named(base: Path, daemon: Daemon, loops: list[Loop], tmp_path: Path) -> None:
    """A /dev with 100,000 entries (the tenant's tmpfs): the node bound in first is still named, the daemon
    keeps serving others within STALL_S while the tenant reads."""
    lp = loops[0]
    loop = ReaderLoop(base / "mnt" / "proc" / "uptime", tmp_path / "host-reads.jsonl", interval=0.05)
    try:
        got = _tenant(base, "many-dev", "100000", f"{lp.dev[0]}:{lp.dev[1]}", lp.path, timeout=180)
    finally:
        res = loop.stop()
    sizes = {ln.split()[3]: ln.split() for ln in str(got["partitions"]).splitlines()[2:]}
    assert "xvdq" in sizes and (int(sizes["xvdq"][0]), int(sizes["xvdq"][1])) == lp.dev, got
    assert res.longest_s < STALL_S and not res.errors, res.summary("many-dev")


def test_control_the_tenants_own_fuse_does_hang(base: Path, daemon: Daemon) -> None:
    """Control for the harness: the tenant's own access to its stopped FUSE server hangs (so the attacks above
    were real ones), and the SIGKILL path cleans it up; the daemon is untouched."""
    cmd = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "unshare", "-Urmpf",
           "--kill-child", SYSTEM_PY, str(TENANT), "hang-self", str(base / "mnt"), str(base)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.strip() == "stopped", line
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting in listdir
    finally:
        # The init cannot exit while it waits on its own stopped server, and the server would only be killed by
        # the init's exit (the pid namespace dies with it): kill the server (and every other descendant) first,
        # or the init stays in D state for good once the request has reached the server.
        for pid in reversed(descendants(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=10)
    r = subprocess.run(["cat", f"{base}/mnt/proc/uptime"], capture_output=True, timeout=STALL_S)
    assert r.returncode == 0
