"""Real containers and real daemons for tests (test support, root only).

Role: build a busybox rootfs from ``/bin/busybox`` (busybox-static), write an OCI bundle with ``runc spec`` edited in
Python (memory limit, cpuset, hooks, cgroupsPath under a test-owned parent), run/exec/kill/delete containers with a
PRIVATE ``runc --root`` (or ``crun --root``), and start/stop a lxcfs-compatible daemon (ours: ``pylxcfs -f --pidfile``;
or the C ``lxcfs -f -p``) on a tmp mount point. Everything it creates lives under a directory the caller owns, under
one cgroup parent the caller names, and is removed by the ``cleanup``/``stop`` methods. It never kills by name and
never mounts over host paths.

API (stable; additive changes only):
- ``build_busybox_rootfs(dest) -> Path``; ``add_host_binary(rootfs, "/usr/bin/free")`` (binary + its libraries)
- ``make_bundle(base, name, *, memory_bytes=None, cpus=None, mems="0", args=..., cgroup_parent=None,
  hooks=None, readonly=False, env=None) -> Bundle``; ``Bundle.add_hook(stage, path, args, env, timeout)``,
  ``Bundle.write()``, ``Bundle.rootfs``, ``Bundle.config``
- ``Runtime(root, binary="runc")``: ``run(cid, bundle) -> Container``, ``state``, ``exec``, ``kill``, ``delete``,
  ``list_ids``, ``cleanup()``; ``Container.exec/read/sh/mountinfo/host_mountinfo/stop``
- ``cgroup_parent_name(area)``, ``remove_cgroup_parent(name)``
- ``start_daemon(mountpoint, impl=None, args=(), workdir=None) -> Daemon``;
  ``Daemon.stop/kill/sigstop/sigcont/pids`` (signals reach the whole daemon tree);
  ``daemon_impl()`` (env ``PYLXCFS_TEST_DAEMON`` = ``pylxcfs`` (default) or ``lxcfs``)
- ``mountinfo(pid="self") -> list[MountEntry]``, ``mounts_at(path)``, ``lazy_umount(path)``,
  ``host_mount_snapshot()``
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
CGROUP_ROOT = Path("/sys/fs/cgroup")
GIB = 1024**3


# --------------------------------------------------------------------------------------------------- rootfs / bundle

def build_busybox_rootfs(dest: Path) -> Path:
    """Make a minimal rootfs at dest: /bin/busybox plus one symlink per applet, /etc/passwd, empty mount points."""
    dest = Path(dest)
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root", "run", "var/lib/lxc"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        # Skip "busybox" itself: a symlink named busybox -> busybox would replace the binary (engines.md).
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def add_host_binary(rootfs: Path, binary: str | Path, dest: str | None = None) -> Path:
    """Copy a dynamically linked host binary and every library `ldd` lists into rootfs (same paths), e.g. procps
    /usr/bin/free, whose MemTotal comes from /proc/meminfo (busybox free uses sysinfo(2), which lxcfs cannot
    virtualise). Returns the path inside the rootfs."""
    binary = Path(binary)
    target = Path(rootfs) / (dest or str(binary)).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else (parts[0] if parts and parts[0].startswith("/") else "")
        if lib.startswith("/"):
            libdest = Path(rootfs) / lib.lstrip("/")
            libdest.parent.mkdir(parents=True, exist_ok=True)
            if not libdest.exists():
                shutil.copy2(os.path.realpath(lib), libdest)
    return Path("/") / target.relative_to(rootfs)


def cgroup_parent_name(area: str) -> str:
    """A cgroup parent name owned by this test process: pylxcfs-test-<area>-<pid>."""
    return f"pylxcfs-test-{area}-{os.getpid()}"


def remove_cgroup_parent(name: str) -> None:
    """rmdir <hierarchy>/<name> (bottom-up) in every mounted hierarchy; members must be gone already."""
    if not name.strip("/") or ".." in name.split("/"):
        raise ValueError(f"refusing odd cgroup parent {name!r}")
    for hier in CGROUP_ROOT.iterdir():
        top = hier / name.strip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


@dataclass
class Bundle:
    """An OCI bundle directory: config.json (as a dict, written by write()) and rootfs/."""

    path: Path
    config: dict[str, Any]

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def add_hook(self, stage: str, path: str, args: Sequence[str] | None = None, env: Sequence[str] | None = None,
                 timeout: int | None = None) -> None:
        """Append an OCI hook (prestart, createRuntime, createContainer, startContainer, poststart, poststop)."""
        hook: dict[str, Any] = {"path": path}
        if args is not None:
            hook["args"] = list(args)
        if env is not None:
            hook["env"] = list(env)
        if timeout is not None:
            hook["timeout"] = timeout
        self.config.setdefault("hooks", {}).setdefault(stage, []).append(hook)
        self.write()

    def write(self) -> None:
        self.config_path.write_text(json.dumps(self.config, indent=1))


def make_bundle(base: Path, name: str = "ct", *, memory_bytes: int | None = None, cpus: str | None = None,
                mems: str = "0", args: Sequence[str] = ("sleep", "100000"), cgroup_parent: str | None = None,
                hooks: dict[str, list[dict[str, Any]]] | None = None, readonly: bool = False,
                env: Sequence[str] | None = None, rootfs: Path | None = None) -> Bundle:
    """Create base/name with a fresh busybox rootfs (or a symlink-free copy of `rootfs`) and an edited `runc spec`."""
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=False)
    subprocess.run(["runc", "spec", "--bundle", str(path)], check=True, capture_output=True)
    if rootfs is None:
        build_busybox_rootfs(path / "rootfs")
    else:
        shutil.copytree(rootfs, path / "rootfs", symlinks=True)
    config = json.loads((path / "config.json").read_text())
    config["root"] = {"path": "rootfs", "readonly": readonly}
    proc = config["process"]
    proc["terminal"] = False
    proc["args"] = list(args)
    if env is not None:
        proc["env"] = list(proc.get("env", [])) + list(env)
    linux = config.setdefault("linux", {})
    res = linux.setdefault("resources", {})
    if memory_bytes is not None:
        res["memory"] = {"limit": int(memory_bytes)}
    if cpus is not None:
        res["cpu"] = {"cpus": cpus, "mems": mems}
    if cgroup_parent is not None:
        linux["cgroupsPath"] = f"/{cgroup_parent.strip('/')}/{name}"
    if hooks:
        config["hooks"] = hooks
    bundle = Bundle(path, config)
    bundle.write()
    return bundle


# --------------------------------------------------------------------------------------------------- runtime

@dataclass
class Container:
    """A container started by Runtime.run; pid is the host pid of its init."""

    id: str
    runtime: Runtime
    bundle: Bundle
    pid: int

    def exec(self, *argv: str, timeout: float = 20, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.runtime.exec(self.id, *argv, timeout=timeout, check=check)

    def sh(self, script: str, timeout: float = 20, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.exec("sh", "-c", script, timeout=timeout, check=check)

    def read(self, path: str, timeout: float = 20) -> str:
        """cat a file inside the container; raises on a non-zero exit (stderr in the message)."""
        return self.exec("cat", path, timeout=timeout, check=True).stdout

    def mountinfo(self) -> list[MountEntry]:
        """The container's mount table as the container sees it (/proc/self/mountinfo read inside)."""
        return parse_mountinfo(self.read("/proc/self/mountinfo"))

    def host_mountinfo(self) -> list[MountEntry]:
        """The container's mount table read from the host (/proc/<pid>/mountinfo): no exec, no FUSE access."""
        return parse_mountinfo(Path(f"/proc/{self.pid}/mountinfo").read_text())

    def stop(self) -> None:
        self.runtime.delete(self.id, force=True)


@dataclass
class Runtime:
    """runc or crun with a private state root (``--root``) so tests never see or touch other containers."""

    root: Path
    binary: str = "runc"
    started: list[str] = field(default_factory=list)

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def run(self, cid: str, bundle: Bundle, timeout: float = 60) -> Container:
        """`run -d`; the container's stdio goes to <bundle>/<cid>.log. Raises with that log on failure."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = bundle.path / f"{cid}.log"
        self.started.append(cid)
        with open(log, "ab") as out:
            proc = subprocess.run(self.cmd("run", "-d", "-b", str(bundle.path), cid), stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=out, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.binary} run {cid} failed ({proc.returncode}): {log.read_text()[-3000:]}")
        return Container(cid, self, bundle, int(self.state(cid)["pid"]))

    def state(self, cid: str) -> dict[str, Any]:
        out = subprocess.run(self.cmd("state", cid), capture_output=True, text=True, timeout=20, check=True).stdout
        return dict(json.loads(out))

    def exec(self, cid: str, *argv: str, timeout: float = 20, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.cmd("exec", cid, *argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"exec {argv} in {cid} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def kill(self, cid: str, sig: str = "KILL") -> None:
        subprocess.run(self.cmd("kill", cid, sig), capture_output=True, timeout=20, check=False)

    def delete(self, cid: str, force: bool = True) -> None:
        args = ["delete", "-f", cid] if force else ["delete", cid]
        subprocess.run(self.cmd(*args), capture_output=True, timeout=30, check=False)

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        out = subprocess.run(self.cmd("list", "-q"), capture_output=True, text=True, timeout=20, check=False).stdout
        return out.split()

    def cleanup(self) -> None:
        """Force-delete every container under this root (only ours: the root is private)."""
        for cid in set(self.list_ids()) | set(self.started):
            self.delete(cid, force=True)


# --------------------------------------------------------------------------------------------------- mountinfo

@dataclass(frozen=True)
class MountEntry:
    """One /proc/<pid>/mountinfo line (proc(5)); octal escapes in paths decoded."""

    mount_id: int
    parent_id: int
    dev: str
    root: str
    mountpoint: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str

    @property
    def is_shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)

    @property
    def is_lxcfs(self) -> bool:
        return self.fstype == "fuse.lxcfs" or (self.fstype.startswith("fuse") and self.source == "lxcfs")


def _unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 4].isdigit() and len(s[i + 1:i + 4]) == 3:
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        entries.append(MountEntry(int(f[0]), int(f[1]), f[2], _unescape(f[3]), _unescape(f[4]), f[5], tuple(f[6:]),
                                  r[0], _unescape(r[1]) if len(r) > 1 else "", r[2] if len(r) > 2 else ""))
    return entries


def mountinfo(pid: int | str = "self") -> list[MountEntry]:
    """Parse /proc/<pid>/mountinfo (reading it never touches a FUSE server)."""
    return parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())


def mounts_at(path: str | Path, pid: int | str = "self") -> list[MountEntry]:
    p = os.path.normpath(str(path))
    return [m for m in mountinfo(pid) if m.mountpoint == p]


def host_mount_snapshot() -> list[tuple[str, str, str, str]]:
    """(mountpoint, fstype, source, root) of every mount in our namespace, sorted: compare before/after a test."""
    return sorted((m.mountpoint, m.fstype, m.source, m.root) for m in mountinfo())


def lazy_umount(path: str | Path) -> None:
    """umount -l every mount stacked at path (ignores 'not mounted')."""
    for _ in range(len(mounts_at(path)) or 0):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20, check=False)


# --------------------------------------------------------------------------------------------------- daemon

def daemon_impl() -> str:
    """Which daemon tests start: env PYLXCFS_TEST_DAEMON = 'pylxcfs' (default, ours) or 'lxcfs' (the C one)."""
    impl = os.environ.get("PYLXCFS_TEST_DAEMON", "pylxcfs")
    if impl not in ("pylxcfs", "lxcfs"):
        raise ValueError(f"PYLXCFS_TEST_DAEMON must be pylxcfs or lxcfs, not {impl!r}")
    return impl


@dataclass
class Daemon:
    """A running lxcfs-compatible daemon serving `mountpoint`; pid from its pidfile (or the Popen)."""

    impl: str
    mountpoint: Path
    pidfile: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pidfile.read_text().strip())
        return self.proc.pid

    def mounted(self) -> bool:
        return any(m.fstype.startswith("fuse") for m in mounts_at(self.mountpoint))

    def pids(self) -> list[int]:
        """The daemon's process tree: the pidfile pid (our daemon's supervisor) and its descendants (the worker
        that really serves), found through /proc/<pid>/task/<tid>/children. Daemons that double-fork a watchdog
        away (ppid 1) are not part of it."""
        roots = {self.pid, self.proc.pid}
        seen: list[int] = []
        todo = list(roots)
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError, ValueError):
                    todo += [int(x) for x in (task / "children").read_text().split()]
        return seen

    def _signal(self, sig: int, tree: bool = True) -> None:
        for pid in (self.pids() if tree else list({self.pid, self.proc.pid})):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def sigstop(self) -> None:
        """SIGSTOP the whole daemon (supervisor and worker): nothing answers FUSE requests any more."""
        self._signal(signal.SIGSTOP)

    def sigcont(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole daemon tree, like a crash of the service (C lxcfs leaves a stale mount: ENOTCONN)."""
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        """SIGCONT + SIGTERM, SIGKILL after `timeout`, then lazy-umount whatever is left at the mount point."""
        if self.proc.poll() is None:
            self.sigcont()
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        lazy_umount(self.mountpoint)


def daemon_command(mountpoint: Path, pidfile: Path, impl: str, args: Sequence[str] = ()) -> list[str]:
    if impl == "pylxcfs":
        return [str(VENV_BIN / "pylxcfs"), "--foreground", "--pidfile", str(pidfile), *args, str(mountpoint)]
    return ["lxcfs", "-f", "-p", str(pidfile), *args, str(mountpoint)]


def start_daemon(mountpoint: Path, impl: str | None = None, args: Iterable[str] = (), workdir: Path | None = None,
                 timeout: float = 20) -> Daemon:
    """Start the daemon in the foreground on `mountpoint` (created if needed) and wait until it is mounted.

    `args` are daemon flags common to both implementations (-l, -u, --enable-cfs). Fails fast, with the daemon's
    log, if it exits before mounting.
    """
    impl = impl or daemon_impl()
    mountpoint = Path(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir) if workdir else mountpoint.parent
    pidfile = workdir / f"{mountpoint.name}.{impl}.pid"
    log = workdir / f"{mountpoint.name}.{impl}.log"
    out = open(log, "ab")  # noqa: SIM115 - the daemon keeps it
    proc = subprocess.Popen(daemon_command(mountpoint, pidfile, impl, list(args)), stdin=subprocess.DEVNULL,
                            stdout=out, stderr=out, start_new_session=True)
    out.close()
    daemon = Daemon(impl, mountpoint, pidfile, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.mounted():
            return daemon
        if proc.poll() is not None:
            raise RuntimeError(f"{impl} exited with {proc.returncode} before mounting: {log.read_text()[-3000:]}")
        time.sleep(0.05)
    daemon.stop()
    raise RuntimeError(f"{impl} did not mount {mountpoint} within {timeout}s: {log.read_text()[-3000:]}")
