"""Fixtures for the /sys/devices/system/cpu client tests (tier 4: root, real FUSE daemons, real runc containers).

One module-scoped environment: our daemon and the C lxcfs 5.0.3 (for the side-by-side comparison), each on its
own tmp mount point; one private `runc --root`; one cgroup parent pylxcfs-test-cputree-<pid>. Containers get a
busybox rootfs plus the host's /usr (and the two /etc directories the JDK links into) bound READ-ONLY, so the real
clients (util-linux lscpu/taskset, coreutils nproc, glibc getconf, sysstat mpstat, Python, node, java) run inside.
The real lxcfs-hook binds the daemon's files at createRuntime, as in production. Everything is removed at the end.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import containers as C

HOOK = str(C.VENV_BIN / "lxcfs-hook")
TOOLKIT = str(C.VENV_BIN / "isulad-lxcfs-toolkit")
MEM_LIMIT = 768 * 1024 * 1024
HOST_RO_DIRS = ("/usr", "/etc/alternatives", "/etc/java-17-openjdk")


@dataclass
class Env:
    """What the module owns."""

    base: Path
    runtime: C.Runtime
    cgroup: str
    registry: Path
    daemons: dict[str, C.Daemon] = field(default_factory=dict)
    counter: list[int] = field(default_factory=lambda: [0])

    def lxcfs_dir(self, impl: str) -> Path:
        return self.base / f"mnt-{impl}"

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e.update(PYLXCFS_STATE_ROOTS=f"runc:{self.runtime.root}", PYLXCFS_REGISTRY_DIR=str(self.registry),
                 PYLXCFS_PROCSCAN="0")
        return e

    def toolkit(self, impl: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [TOOLKIT, "--lxcfs-dir", str(self.lxcfs_dir(impl)), *args]
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=60, check=False)

    def run(self, impl: str, cpus: str) -> C.Container:
        """A container limited to `cpus` and MEM_LIMIT whose files come from daemon `impl` through the real hook."""
        self.counter[0] += 1
        name = f"{impl}-{self.counter[0]}"
        b = C.make_bundle(self.base, name, memory_bytes=MEM_LIMIT, cpus=cpus, cgroup_parent=self.cgroup)
        for link, target in (("lib", "usr/lib"), ("lib64", "usr/lib64")):
            (b.rootfs / link).symlink_to(target)
        for d in HOST_RO_DIRS:
            (b.rootfs / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
            b.config["mounts"].append({"destination": d, "type": "bind", "source": d,
                                       "options": ["rbind", "ro", "nosuid", "nodev"]})
        b.add_hook("createRuntime", HOOK, ["lxcfs-hook", "--stage", "createRuntime", "--lxcfs-dir",
                                           str(self.lxcfs_dir(impl)), "--registry-dir", str(self.registry),
                                           "--log", str(self.base / "hook.log")], timeout=30)
        return self.runtime.run(name, b)


@pytest.fixture(scope="module")
def cenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # Prerequisites of this machine kind: a missing one is a failure, never a skip.
    assert os.geteuid() == 0, "these tests need root"
    assert os.path.exists("/dev/fuse"), "/dev/fuse missing"
    assert C.BUSYBOX.exists(), "busybox-static missing (make install)"
    base = tmp_path_factory.mktemp("cputree")
    env = Env(base, C.Runtime(base / "runc-root"), C.cgroup_parent_name("cputree"), base / "registry")
    try:
        for impl in ("pylxcfs", "lxcfs"):
            env.daemons[impl] = C.start_daemon(env.lxcfs_dir(impl), impl=impl, workdir=base)
        yield env
    finally:
        env.runtime.cleanup()
        for d in env.daemons.values():
            d.stop()
        C.remove_cgroup_parent(env.cgroup)
