"""Fixtures for the engine tests (podman, docker, containerd): root only, real engines, real daemon.

Role: one busybox image per session (built from busybox-static + procps free, imported into each engine without a
registry), one test-owned cgroup parent, one lxcfs-compatible daemon on a private mount point (ours by default;
PYLXCFS_TEST_DAEMON=lxcfs runs the C lxcfs 5.0.3 as a stand-in to check the harness), and a `toolkit` runner for
`isulad-lxcfs-toolkit --lxcfs-dir <that mount point> ...`. Engines themselves are module fixtures in each test
module. Missing prerequisites FAIL (make install provides them all on this machine kind), they never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from support import containers as ct
from support import engines as eng

pytestmark = [pytest.mark.root, pytest.mark.e2e, pytest.mark.fuse]


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> eng.BusyboxImage:
    """rootfs dir + rootfs tarball + OCI archive, built once per session."""
    eng.require("ldd")
    return eng.build_image(tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="session")
def cgroup_parent() -> Iterator[str]:
    """`pylxcfs-test-engines-<pid>`: every engine puts its containers under it; removed at session end."""
    name = f"pylxcfs-test-engines-{os.getpid()}"
    yield name
    leftovers = eng.remove_cgroup_parent(name)
    assert not leftovers, f"cgroups left behind: {leftovers}"


@pytest.fixture(scope="session")
def lxcfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ct.Daemon]:
    """The daemon under test on <tmp>/lxcfs (ours unless PYLXCFS_TEST_DAEMON=lxcfs)."""
    work = tmp_path_factory.mktemp("daemon")
    daemon = ct.start_daemon(work / "lxcfs", workdir=work)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def toolkit(lxcfs: ct.Daemon, tmp_path_factory: pytest.TempPathFactory) -> eng.Toolkit:
    work = tmp_path_factory.mktemp("toolkit")
    return eng.Toolkit(lxcfs_dir=lxcfs.mountpoint, log=work / "toolkit.log", env=dict(os.environ),
                       registry_dir=work / "registry")


@pytest.fixture(scope="session")
def served_files(lxcfs: ct.Daemon) -> list[str]:
    """Container paths the hook binds ('/proc/meminfo', ..., the directory '/sys/devices/system/cpu') that the
    daemon actually serves and the host has (a container lacks what the host lacks, e.g. /proc/pressure without PSI):
    the registry's bind targets, one mount each."""
    from pylxcfs.views.registry import bind_targets

    out = []
    for rel, _is_dir in bind_targets():
        if (lxcfs.mountpoint / rel).exists() and os.path.exists("/" + rel):
            out.append("/" + rel)
    assert "/proc/meminfo" in out and "/proc/cpuinfo" in out, f"daemon serves too little: {out}"
    return out
