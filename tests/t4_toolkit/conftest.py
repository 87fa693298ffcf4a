"""Fixtures for the toolkit/hook tests (tier 4: root, real FUSE daemon, real runc containers with a busybox rootfs).

One daemon and one private `runc --root` per module; every container, registry file and mount lives under the
module's tmp dir; the cgroup parent is pylxcfs-test-toolkit-<pid>. Discovery is confined to our own runc root and
registry through the toolkit's env knobs, so other people's containers are never seen or touched.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import containers as C

HOOK = str(C.VENV_BIN / "lxcfs-hook")
TOOLKIT = str(C.VENV_BIN / "isulad-lxcfs-toolkit")
MEM_LIMIT = C.GIB


def _require_root_env() -> None:
    # Prerequisites that exist on this machine kind: a missing one is a FAILURE, not a skip (common.md).
    assert os.geteuid() == 0, "toolkit tests need root"
    assert os.path.exists("/dev/fuse"), "/dev/fuse missing"
    assert C.BUSYBOX.exists(), "busybox-static missing (make install)"


@dataclass
class Env:
    """Everything one test module owns."""

    base: Path
    runtime: C.Runtime
    cgroup: str
    lxcfs: Path
    registry: Path
    daemon: C.Daemon | None = None
    counter: list[int] = field(default_factory=lambda: [0])

    def env(self, **extra: str) -> dict[str, str]:
        e = dict(os.environ)
        e.update(PYLXCFS_STATE_ROOTS=f"runc:{self.runtime.root}", PYLXCFS_REGISTRY_DIR=str(self.registry),
                 PYLXCFS_PROCSCAN="0")
        e.update(extra)
        return e

    def toolkit(self, *args: str, timeout: float = 60,
                lxcfs_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [TOOLKIT, "--lxcfs-dir", str(lxcfs_dir or self.lxcfs), *args]
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)

    def hook_args(self, stage: str, *extra: str, lxcfs_dir: Path | None = None) -> list[str]:
        return ["lxcfs-hook", "--stage", stage, "--lxcfs-dir", str(lxcfs_dir or self.lxcfs),
                "--registry-dir", str(self.registry),
                "--log", str(self.base / "hook.log"), *extra]

    def bundle(self, name: str | None = None, *, cpus: str = "0", hook_stage: str | None = None,
               free: bool = False, lxcfs_dir: Path | None = None) -> C.Bundle:
        self.counter[0] += 1
        name = name or f"c{self.counter[0]}"
        b = C.make_bundle(self.base, name, memory_bytes=MEM_LIMIT, cpus=cpus, cgroup_parent=self.cgroup)
        if free:
            C.add_host_binary(b.rootfs, "/usr/bin/free")
        if hook_stage:
            b.add_hook(hook_stage, HOOK, self.hook_args(hook_stage, lxcfs_dir=lxcfs_dir), timeout=20)
        return b

    def run(self, name: str | None = None, **kw: object) -> C.Container:
        b = self.bundle(name, **kw)  # type: ignore[arg-type]
        return self.runtime.run(b.path.name, b)


@pytest.fixture(scope="module")
def tenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    _require_root_env()
    base = tmp_path_factory.mktemp("toolkit")
    env = Env(base, C.Runtime(base / "runc-root"), C.cgroup_parent_name("toolkit"), base / "lxcfs", base / "registry")
    env.daemon = C.start_daemon(env.lxcfs, workdir=base)
    try:
        yield env
    finally:
        env.runtime.cleanup()
        if env.daemon is not None:
            env.daemon.stop()
        C.remove_cgroup_parent(env.cgroup)


def served_views(lxcfs: Path) -> list[str]:
    """The registry's bind targets (files, and the /sys/devices/system/cpu directory) the live daemon actually
    serves (a healthy daemon: safe to stat from the test)."""
    from pylxcfs.views.registry import bind_targets

    return [v for v, _is_dir in bind_targets() if (lxcfs / v).exists()]


def wait_until(pred: object, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def host_snapshot(base: Path) -> list[tuple[str, str, str, str]]:
    """The part of the host mount table a toolkit bug could change: anything at or under /, /etc, /proc, /sys,
    /run, our own tmp dir, plus every lxcfs FILE bind anywhere (root != "/"). Other engineers' daemons come and go
    concurrently elsewhere under /tmp, so the whole table is not a stable reference."""
    keep = []
    for m in C.mountinfo():
        mp = m.mountpoint
        if (mp in ("/", "/etc", "/proc", "/sys", "/run") or mp.startswith(("/etc/", "/proc/", "/run/"))
                or (mp.startswith("/sys/") and not mp.startswith("/sys/fs/cgroup/"))
                or mp.startswith(str(base)) or (m.is_lxcfs and m.root != "/")):
            keep.append((mp, m.fstype, m.source, m.root))
    return sorted(keep)


def read_in(ct: C.Container, path: str, timeout: float = 20) -> str:
    """A file's content inside the container through read(2) (`grep '' FILE`). busybox `cat` uses sendfile(2),
    which FUSE serves from the one page cache every container shares for a bind-mounted file (engines notes,
    05:21): that is a daemon matter, not what these toolkit tests are about."""
    r = ct.exec("grep", "", path, timeout=timeout)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"reading {path} in {ct.id} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout
