"""Tier 3: the daemon mounted for real in a subprocess, both back-ends, read through real syscalls.

The daemon serves a tiny --host-root tree whose meminfo differs from this machine's, so every
expectation comes from the fixture file we wrote, not from our own output."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylxcfs import __version__, syscalls
from pylxcfs.views.registry import VIEW_PATHS, VIEWS
from support.fusedaemon import (
    MEMINFO,
    PYLXCFS,
    Daemon,
    children,
    cmdline,
    make_fixture_root,
    mountinfo_entry,
    start_daemon,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse]

BACKENDS = ["raw", "mfusepy"]


@pytest.fixture(params=BACKENDS)
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    root = make_fixture_root(tmp_path)
    d = start_daemon(tmp_path, "--host-root", str(root), "--fuse-backend", request.param)
    try:
        yield d
    finally:
        d.stop()


def test_mount_line_says_lxcfs_fuse_lxcfs(daemon: Daemon) -> None:
    out = subprocess.run(["mount"], capture_output=True, text=True, check=True).stdout
    assert f"lxcfs on {daemon.mnt} type fuse.lxcfs " in out
    assert mountinfo_entry(daemon.mnt) == ("fuse.lxcfs", "lxcfs")


def test_cat_head_read_pread_stat(daemon: Daemon) -> None:
    f = daemon.mnt / "proc/meminfo"
    assert subprocess.run(["cat", str(f)], capture_output=True, text=True, check=True).stdout == MEMINFO
    assert subprocess.run(["head", "-c", "17", str(f)], capture_output=True, check=True).stdout == \
        MEMINFO.encode()[:17]
    assert f.read_text() == MEMINFO
    fd = os.open(f, os.O_RDONLY)
    try:
        m = MEMINFO.encode()
        # Offset > 0 continues only a render this fd got part of, at the offset its last piece ended (a fresh fd
        # has none: end of file, as the C lxcfs answers); a seek elsewhere in it is end of file too.
        assert os.pread(fd, 10, 100) == b""
        assert os.read(fd, 100) == m[:100] and os.read(fd, 10) == m[100:110]
        assert os.pread(fd, 10, 5) == b""
        assert os.read(fd, 1 << 16) == m[110:] and os.read(fd, 10) == b""
        assert os.pread(fd, 1 << 16, 0) == m  # a poller's pread at 0: a fresh render, whole
        assert os.pread(fd, 10, len(MEMINFO) + 100) == b""
    finally:
        os.close(fd)
    st = os.stat(f)
    # st_size = the host file's length, as C lxcfs reports (the host here is the --host-root tree)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444 and st.st_size == len(MEMINFO)


def test_busybox_cat_uses_sendfile_and_gets_everything(daemon: Daemon) -> None:
    # busybox cat (what busybox containers run) copies with sendfile(2), which goes through the page cache and
    # stops at st_size: with procfs's size 0 it printed nothing.
    out = subprocess.run(["busybox", "cat", str(daemon.mnt / "proc/meminfo")], capture_output=True, text=True,
                         check=True, timeout=20).stdout
    assert out == MEMINFO
    short = subprocess.run(["busybox", "cat", str(daemon.mnt / "sys/devices/system/cpu/online")],
                           capture_output=True, text=True, check=True, timeout=20).stdout
    assert short == "0\n"


def test_free_parses_our_meminfo(daemon: Daemon) -> None:
    # `free` in a private mount namespace with our file over /proc/meminfo (design.md §4.4).
    script = f"mount --bind {daemon.mnt}/proc/meminfo /proc/meminfo && /usr/bin/free -k"
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                         text=True, timeout=20, check=True).stdout
    mem = next(line.split() for line in out.splitlines() if line.startswith("Mem:"))
    assert mem[1] == "1048576"  # MemTotal of the fixture


def test_readdir_lists_the_tree(daemon: Daemon) -> None:
    # The tiny host tree has no /proc/pressure: rows served only where the host has the file are left out,
    # directory and all (a container's /proc would not have them either).
    optional = {v.path for v in VIEWS if v.host_optional}
    assert optional, "the registry has host_optional rows (proc/pressure/*)"
    proc = sorted(p.split("/", 1)[1] for p in VIEW_PATHS if p.startswith("proc/") and p not in optional)
    assert sorted(os.listdir(daemon.mnt)) == ["proc", "sys"]
    assert sorted(os.listdir(daemon.mnt / "proc")) == proc
    assert not (daemon.mnt / "proc/pressure").exists()
    # a directory view: the registry's files there plus the host tree's own entries (the fixture has only online)
    cpu_files = {p.rsplit("/", 1)[1] for p in VIEW_PATHS if p.startswith("sys/devices/system/cpu/")}
    assert cpu_files == {"online", "possible", "present", "offline"}
    assert sorted(os.listdir(daemon.mnt / "sys/devices/system/cpu")) == sorted(cpu_files)
    assert (daemon.mnt / "sys/devices/system/cpu/online").read_text() == "0\n"


def test_write_open_and_create_fail(daemon: Daemon) -> None:
    for flags in (os.O_WRONLY, os.O_RDWR):
        with pytest.raises(PermissionError):
            os.open(daemon.mnt / "proc/meminfo", flags)
    with pytest.raises(OSError) as e:
        os.open(daemon.mnt / "proc/newfile", os.O_WRONLY | os.O_CREAT, 0o644)
    assert e.value.errno in (errno.ENOSYS, errno.EACCES, errno.EROFS, errno.EPERM)
    with pytest.raises(FileNotFoundError):
        os.stat(daemon.mnt / "proc/nope")


def test_sigterm_unmounts_and_removes_pidfile(daemon: Daemon) -> None:
    assert daemon.pidfile.read_text().strip() == str(daemon.pid)
    assert daemon.stop() == 0
    assert not daemon.mounted()
    assert not daemon.pidfile.exists()


def test_stale_mount_point_is_cleaned_and_reused(tmp_path: Path) -> None:
    mnt = tmp_path / "stale"
    mnt.mkdir()
    # A FUSE mount whose connection is gone: mount with a /dev/fuse fd, then close it unanswered.
    fd = os.open("/dev/fuse", os.O_RDWR)
    syscalls.mount("lxcfs", str(mnt), "fuse.lxcfs", syscalls.MS_NOSUID | syscalls.MS_NODEV,
                   f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other")
    os.close(fd)
    try:
        with pytest.raises(OSError) as e:
            os.stat(mnt)
        assert e.value.errno == errno.ENOTCONN
        d = start_daemon(tmp_path, "--host-root", str(make_fixture_root(tmp_path)), mnt=mnt)
        try:
            assert (mnt / "proc/meminfo").read_text() == MEMINFO
            assert "stale" in d.log_text()
        finally:
            d.stop()
    finally:
        while mountinfo_entry(mnt) is not None:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_live_mount_is_refused_and_left_alone(daemon: Daemon, tmp_path: Path) -> None:
    r = subprocess.run([str(PYLXCFS), "-f", "--pidfile", str(tmp_path / "other.pid"), str(daemon.mnt)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    assert "live" in r.stderr and str(daemon.mnt) in r.stderr
    assert not (tmp_path / "other.pid").exists()
    assert (daemon.mnt / "proc/meminfo").read_text() == MEMINFO


def test_locked_pidfile_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    r = subprocess.run([str(PYLXCFS), "-f", "--pidfile", str(daemon.pidfile), str(tmp_path / "m2")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 4 and "locked" in r.stderr


def test_version_and_bad_host_root(tmp_path: Path) -> None:
    r = subprocess.run([str(PYLXCFS), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == f"pylxcfs {__version__}"
    r = subprocess.run([str(PYLXCFS), "-f", "--pidfile", str(tmp_path / "p"), "--host-root", str(tmp_path / "none"),
                        str(tmp_path / "m")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "--host-root" in r.stderr and "Traceback" not in r.stderr
    assert mountinfo_entry(tmp_path / "m") is None


def test_background_mode_returns_after_mounting(tmp_path: Path) -> None:
    mnt, pidfile = tmp_path / "bg", tmp_path / "bg.pid"
    r = subprocess.run([str(PYLXCFS), "--pidfile", str(pidfile), "--host-root", str(make_fixture_root(tmp_path)),
                        str(mnt)], capture_output=True, text=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        assert mountinfo_entry(mnt) == ("fuse.lxcfs", "lxcfs")
        assert (mnt / "proc/meminfo").read_text() == MEMINFO
    finally:
        pid = int(pidfile.read_text())
        os.kill(pid, 15)
        for _ in range(200):
            if mountinfo_entry(mnt) is None and not pidfile.exists():
                break
            time.sleep(0.05)
        assert mountinfo_entry(mnt) is None and not pidfile.exists()


def test_sd_notify_ready_and_stopping(tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(15)
    mnt, pidfile = tmp_path / "n", tmp_path / "n.pid"
    proc = subprocess.Popen([str(PYLXCFS), "-f", "--pidfile", str(pidfile), "--host-root",
                             str(make_fixture_root(tmp_path)), str(mnt)],
                            env=dict(os.environ, NOTIFY_SOCKET=str(sock_path)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        msg = srv.recv(4096).decode()
        assert "READY=1" in msg and f"MAINPID={proc.pid}" in msg
        assert (mnt / "proc/meminfo").read_text() == MEMINFO  # ready means serving
        os.kill(proc.pid, 1)  # SIGHUP: a reload says RELOADING=1 then READY=1
        assert "RELOADING=1" in srv.recv(4096).decode()
        assert "READY=1" in srv.recv(4096).decode()
        proc.send_signal(15)
        assert "STOPPING=1" in srv.recv(4096).decode()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        while mountinfo_entry(mnt) is not None:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        srv.close()


def test_external_umount_ends_the_daemon(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, "--host-root", str(make_fixture_root(tmp_path)))
    try:
        subprocess.run(["umount", str(d.mnt)], check=True, timeout=20)
        # like C lxcfs: nothing left to serve. The property is that it ends, not how fast (10 s was missed once
        # at load 17).
        assert d.proc.wait(60) == 0
        assert not d.pidfile.exists()
        assert "connection is gone" in d.log_text()
    finally:
        d.stop()


@pytest.mark.parametrize("fusermount", ["alive", "killed"])
def test_mfusepy_backend_sigkill_leaves_no_stale_mount(tmp_path: Path, fusermount: str) -> None:
    """auto_unmount: libfuse's fusermount3 unmounts when the single mfusepy process dies, but not always (under
    load its check of the mount point can end in ECONNABORTED, and then it leaves the mount: 16 of 100 SIGKILLs
    under stress-ng --cpu 2). Our watchdog unmounts what it left; "killed" takes fusermount3 out first, so only
    the watchdog can do it."""
    d = start_daemon(tmp_path, "--host-root", str(make_fixture_root(tmp_path)), "--fuse-backend", "mfusepy")
    try:
        assert (d.mnt / "proc/meminfo").read_text() == MEMINFO
        assert d.watchdog is not None
        if fusermount == "killed":
            helpers = [c for c in children(d.pid) if cmdline(c).startswith("fusermount3 ")]
            assert len(helpers) == 1, [cmdline(c) for c in children(d.pid)]
            os.kill(helpers[0], 9)
        os.kill(d.pid, 9)
        d.proc.wait(5)
        # The property is that no stale mount stays, not how fast (the watchdog starts a Python to check), so
        # the wait is generous (it ends as soon as the mount is gone).
        deadline = time.monotonic() + 30
        while mountinfo_entry(d.mnt) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mountinfo_entry(d.mnt) is None
        os.stat(d.mnt)  # a plain directory again, no ENOTCONN
    finally:
        d.stop()
