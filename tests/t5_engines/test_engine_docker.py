"""Docker (dockerd 20.10 + its containerd + runc), started by the test: remount into running containers, and the
runtime-wrapper recipe (contrib/engines/lxcfs-runc) that gives Docker the hook it lacks (no hooks.d in 20.10).

Expectations come from the limits the test sets (`--memory`, `--cpuset-cpus`, `docker update`) and from the host's
own /proc files, never from the daemon's output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers as ct
from support import engines as eng
from support.engines import GiB, Toolkit, host_cpus, host_memtotal_kib, require

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "contrib" / "engines" / "lxcfs-runc"
SEED_FILES = ["/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/partitions", "/proc/stat", "/proc/swaps",
              "/proc/uptime"]

pytestmark = [pytest.mark.root, pytest.mark.e2e, pytest.mark.fuse]


@pytest.fixture(scope="module")
def docker(
    tmp_path_factory: pytest.TempPathFactory, busybox_image: eng.BusyboxImage, cgroup_parent: str
) -> Iterator[eng.Dockerd]:
    require("dockerd", "docker", "runc", "jq")
    base = tmp_path_factory.mktemp("docker")
    # The shipped wrapper, unchanged; a one-line launcher points it at this test's hook file (env of dockerd does
    # not reliably reach the runtime through containerd and its shim).
    launcher = base / "lxcfs-runc-test"
    launcher.write_text(f'#!/bin/sh\nLXCFS_RUNC_HOOKS={base}/runc-hooks.json exec {WRAPPER} "$@"\n')
    launcher.chmod(0o755)
    dockerd = eng.Dockerd(base, cgroup_parent=cgroup_parent, runtimes={"lxcfs-runc": launcher})
    try:
        dockerd.start()
        dockerd.import_image(busybox_image.tarball)
        yield dockerd
    finally:
        dockerd.close()


def _view(docker: eng.Dockerd, cid: str) -> eng.InsideView:
    return eng.inside_view(lambda *cmd: docker.exec(cid, *cmd))


def test_remount_into_container_started_without_lxcfs(
    docker: eng.Dockerd, toolkit: Toolkit, served_files: list[str]
) -> None:
    """docker run -d without any lxcfs mount -> remount --container-id gives the view; umount takes it away."""
    cid = docker.run_detached("--memory", "1g", "--cpuset-cpus", "0")
    eng.assert_host_view(_view(docker, cid), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())

    toolkit("remount", "--container-id", cid)
    eng.assert_virtualized(_view(docker, cid), memory_bytes=GiB, cpus=1, served=served_files)

    # Twice does not stack: still exactly one fuse.lxcfs mount per file (checked by assert_virtualized).
    toolkit("remount", "--container-id", cid[:12])
    eng.assert_virtualized(_view(docker, cid), memory_bytes=GiB, cpus=1, served=served_files)

    toolkit("umount", "--container-id", cid[:12])
    eng.assert_host_view(_view(docker, cid), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())


def test_discovery_through_dockers_runc_state_root_and_name(
    docker: eng.Dockerd, toolkit: Toolkit, served_files: list[str]
) -> None:
    """With the state root given and the /proc scan off, docker's runc state (<exec-root>/runtime-runc/moby, the
    /run/docker/runtime-runc/moby of a default install) is enough to find the container, by prefix and by the
    docker name (from <data-root>/containers/<id>/config.v2.json; PYLXCFS_DOCKER_ROOT names our data root)."""
    name = f"pylxcfs-eng-{os.getpid()}-d1"
    cid = docker.run_detached("--name", name, "--memory", "1g", "--cpuset-cpus", "0")
    root = docker.runc_state_root
    assert (root / cid / "state.json").is_file(), f"docker's runc state is not where measured: {root}"
    scope = ["--state-root", f"runc:{root}", "--no-procscan"]
    env = {"PYLXCFS_DOCKER_ROOT": str(docker.data_root)}
    toolkit("remount", "--container-id", name, *scope, extra_env=env)
    eng.assert_virtualized(_view(docker, cid), memory_bytes=GiB, cpus=1, served=served_files)
    toolkit("umount", "--container-id", cid[:12], *scope, extra_env=env)
    eng.assert_host_view(_view(docker, cid), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())


def test_seed_usage_example_on_docker(docker: eng.Dockerd, toolkit: Toolkit, served_files: list[str]) -> None:
    """The seed's walkthrough: view mounted, then `update --cpuset-cpus 0-1 --memory 1G` -> free -m 1024, both
    CPUs in cpuinfo, and `mount | grep lxcfs` lists the seed's files."""
    cid = docker.run_detached("--memory", "512m", "--cpuset-cpus", "0")
    toolkit("remount", "--container-id", cid)
    eng.assert_virtualized(_view(docker, cid), memory_bytes=512 << 20, cpus=1, served=served_files)

    # --memory-swap -1: docker refuses a memory limit above the current memory+swap limit otherwise.
    # busybox cat reads through sendfile(2): on kernels whose fuse_splice_read() ignores FOPEN_DIRECT_IO (6.5 until
    # "fuse: use copy_splice_read() for FOPEN_DIRECT_IO splice read") the old, shorter i_size would stick after the
    # update; pylxcfs's splice guard makes busybox fall back to read(2), so the update must show at once.
    docker("update", "--cpuset-cpus", "0-1", "--memory", "1G", "--memory-swap", "-1", cid)
    view = _view(docker, cid)
    eng.assert_virtualized(view, memory_bytes=GiB, cpus=2, served=served_files)
    grep = docker.exec(cid, "sh", "-c", "mount | grep lxcfs")
    for path in SEED_FILES:
        assert f"lxcfs on {path} type fuse.lxcfs" in grep, f"{path} missing from `mount | grep lxcfs`:\n{grep}"


def test_runtime_wrapper_injects_the_hook(
    docker: eng.Dockerd, toolkit: Toolkit, served_files: list[str], tmp_path: Path
) -> None:
    """contrib/engines/lxcfs-runc + `install-hook --format runc`: the view is there from the container's start."""
    hooks = docker.base / "runc-hooks.json"
    toolkit("install-hook", "--format", "runc", "--dest", str(hooks))
    merged = json.loads(hooks.read_text())
    stages = merged.get("hooks", merged)
    assert any(
        "lxcfs-hook" in os.path.basename(h.get("path", "")) for hs in stages.values() for h in hs
    ), f"install-hook --format runc wrote no lxcfs-hook entry: {merged}"

    cid = docker.run_detached("--runtime", "lxcfs-runc", "--memory", "1g", "--cpuset-cpus", "0")
    eng.assert_virtualized(_view(docker, cid), memory_bytes=GiB, cpus=1, served=served_files)
    record = json.loads((toolkit.registry_dir / f"{cid}.json").read_text())
    assert record["id"] == cid and record["pid"] == docker.pid(cid), record

    # A container on the default runtime is untouched by the wrapper.
    plain = docker.run_detached("--memory", "1g")
    assert not _view(docker, plain).lxcfs


def test_umount_works_with_the_daemon_stopped(
    docker: eng.Dockerd, toolkit: Toolkit, lxcfs: ct.Daemon, served_files: list[str]
) -> None:
    """umount must not need a live daemon: SIGSTOP it (a hung FUSE server), umount, then resume."""
    cid = docker.run_detached("--memory", "1g", "--cpuset-cpus", "0")
    toolkit("remount", "--container-id", cid)
    lxcfs.sigstop()
    try:
        toolkit("umount", "--container-id", cid, timeout=30)
    finally:
        lxcfs.sigcont()
    eng.assert_host_view(_view(docker, cid), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())


def test_daemon_restart_then_remount_all_then_umount_all(
    docker: eng.Dockerd, tmp_path: Path, served_files: list[str]
) -> None:
    """The seed's crash story on docker: a daemon restart leaves dead mounts (ENOTCONN) in running containers;
    `remount --all` repairs every one; with the daemon gone for good, `umount --all` gives host values back.

    A private daemon and registry, and discovery limited to this dockerd's runc state root, so `--all` can only
    ever reach this test's containers (`--all` also picks any container showing lxcfs mounts)."""
    docker.remove_created()  # earlier tests' containers: not this test's business
    daemon = ct.start_daemon(tmp_path / "lxcfs", workdir=tmp_path)
    tk = Toolkit(lxcfs_dir=daemon.mountpoint, log=tmp_path / "toolkit.log", env=dict(os.environ),
                 registry_dir=tmp_path / "registry")
    scope = ["--state-root", f"runc:{docker.runc_state_root}", "--no-procscan"]
    try:
        ids = [docker.run_detached("--memory", "1g", "--cpuset-cpus", "0") for _ in range(2)]
        for cid in ids:
            tk("remount", "--container-id", cid, *scope)
            eng.assert_virtualized(_view(docker, cid), memory_bytes=GiB, cpus=1, served=served_files)

        daemon.stop()
        daemon = ct.start_daemon(tmp_path / "lxcfs", workdir=tmp_path)
        for cid in ids:
            r = docker("exec", cid, "head", "-c", "64", "/proc/meminfo", check=False)
            assert r.returncode != 0 and "not connected" in r.stderr, (r.returncode, r.stdout, r.stderr)

        tk("remount", "--all", *scope)
        for cid in ids:
            eng.assert_virtualized(_view(docker, cid), memory_bytes=GiB, cpus=1, served=served_files)

        daemon.stop()
        tk("umount", "--all", *scope)
        for cid in ids:
            eng.assert_host_view(_view(docker, cid), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())
    finally:
        daemon.stop()
