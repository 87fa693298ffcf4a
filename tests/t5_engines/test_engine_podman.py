"""podman 4.3 (runc) with the hooks.d file `isulad-lxcfs-toolkit install-hook --format hooksd` writes.

Covers the native OCI-hooks path (podman and CRI-O read hooks.d, schema 1.0.0): the view is in place from the
container's start; then umount/remount by short id prefix and by name, remount twice without stacking, and the
seed's usage example (`update --cpuset-cpus 0-1 --memory 1G` -> `free -m` 1024, both CPUs, the seed's mount list).
The podman store is private to the module (graphroot, runroot, tmp_dir, hooks dir); see support/engines.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import engines as eng
from support.engines import GiB, Toolkit, host_cpus, host_memtotal_kib, require

SEED_FILES = ["/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/partitions", "/proc/stat", "/proc/swaps",
              "/proc/uptime"]

pytestmark = [pytest.mark.root, pytest.mark.e2e, pytest.mark.fuse]


@pytest.fixture(scope="module")
def podman(
    tmp_path_factory: pytest.TempPathFactory, busybox_image: eng.BusyboxImage, cgroup_parent: str
) -> Iterator[eng.Podman]:
    require("podman", "conmon", "runc")
    engine = eng.Podman(tmp_path_factory.mktemp("podman"), cgroup_parent=cgroup_parent, runtime="runc")
    try:
        engine.import_image(busybox_image.tarball)
        yield engine
    finally:
        engine.close()


def _regex_literal(pattern: str) -> str:
    """The literal a simple anchored ERE such as `^io\\.lxcfs\\.enable$` or `^(1|true)$` stands for."""
    body = pattern.removeprefix("^").removesuffix("$")
    alt = re.fullmatch(r"\((.*)\)", body)
    if alt:
        body = alt.group(1).split("|")[-1]
    return body.replace("\\", "")


@pytest.fixture(scope="module")
def hook_annotations(podman: eng.Podman, toolkit: Toolkit, lxcfs_hook_file: Path) -> list[str]:
    """`--annotation k=v` args that satisfy the hook file's `when` (none when it says `always`)."""
    spec = json.loads(lxcfs_hook_file.read_text())
    args: list[str] = []
    for key, value in spec.get("when", {}).get("annotations", {}).items():
        k, v = _regex_literal(key), _regex_literal(value)
        assert re.search(key, k) and re.search(value, v), f"cannot satisfy when.annotations {key}={value}"
        args += ["--annotation", f"{k}={v}"]
    return args


@pytest.fixture(scope="module")
def lxcfs_hook_file(podman: eng.Podman, toolkit: Toolkit) -> Path:
    """The hooks.d file from install-hook, written into the private hooks dir, checked against oci-hooks(5)."""
    dest = podman.hooks_dir / "pylxcfs.json"
    toolkit("install-hook", "--format", "hooksd", "--dest", str(dest))
    spec = json.loads(dest.read_text())
    assert spec.get("version") == "1.0.0", spec
    hook_path = spec["hook"]["path"]
    assert os.path.basename(hook_path) == "lxcfs-hook" and os.access(hook_path, os.X_OK), spec
    assert str(toolkit.lxcfs_dir) in spec["hook"].get("args", []), f"hook is not pointed at the test dir: {spec}"
    assert set(spec["stages"]) <= {"prestart", "createRuntime", "createContainer"}, spec
    mode = dest.stat().st_mode
    assert not mode & 0o022, f"hooks.d file is group/world-writable: {oct(mode)}"
    return dest


def _view(podman: eng.Podman, cid: str) -> eng.InsideView:
    return eng.inside_view(lambda *cmd: podman.exec(cid, *cmd))


def test_hooksd_view_then_umount_remount(
    podman: eng.Podman, toolkit: Toolkit, hook_annotations: list[str], served_files: list[str]
) -> None:
    cid = podman.run_detached("--memory", "1g", "--cpuset-cpus", "0", *hook_annotations)
    # The hook mounted the view before the user process started, and registered the container for `--all`.
    eng.assert_virtualized(_view(podman, cid), memory_bytes=GiB, cpus=1, served=served_files)
    record = json.loads((toolkit.registry_dir / f"{cid}.json").read_text())
    assert record["id"] == cid and record["pid"] == podman.pid(cid), record

    # umount by a short id prefix (podman prints 12 chars) -> host values.
    toolkit("umount", "--container-id", cid[:12], extra_env=podman.env)
    eng.assert_host_view(_view(podman, cid), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())

    # remount by full id -> back; again by prefix -> still exactly one mount per file (no stacking).
    toolkit("remount", "--container-id", cid, extra_env=podman.env)
    eng.assert_virtualized(_view(podman, cid), memory_bytes=GiB, cpus=1, served=served_files)
    toolkit("remount", "--container-id", cid[:12], extra_env=podman.env)
    eng.assert_virtualized(_view(podman, cid), memory_bytes=GiB, cpus=1, served=served_files)


def test_remount_and_umount_by_podman_name(
    podman: eng.Podman, toolkit: Toolkit, hook_annotations: list[str], served_files: list[str]
) -> None:
    """--container-id NAME: podman's name lives only in conmon's argv (`-n NAME`), podman's containers.json and
    `podman ps` (measured: not in annotations, runc state or env); the toolkit reads conmon's argv."""
    name = f"pylxcfs-eng-{os.getpid()}-named"
    cid = podman.run_detached("--name", name, "--memory", "1g", "--cpuset-cpus", "0", *hook_annotations)
    toolkit("umount", "--container-id", name, extra_env=podman.env)
    eng.assert_host_view(_view(podman, cid), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())
    toolkit("remount", "--container-id", name, extra_env=podman.env)
    eng.assert_virtualized(_view(podman, cid), memory_bytes=GiB, cpus=1, served=served_files)


def test_container_without_the_annotation_is_untouched(
    podman: eng.Podman, lxcfs_hook_file: Path, hook_annotations: list[str]
) -> None:
    """Opt-in: when the hook file matches on annotations, a container without them gets no lxcfs mount."""
    if not hook_annotations:
        spec = json.loads(lxcfs_hook_file.read_text())
        assert spec["when"].get("always") is True, spec
        return
    cid = podman.run_detached("--memory", "1g")
    assert not _view(podman, cid).lxcfs


def test_seed_usage_example_on_podman(
    podman: eng.Podman, hook_annotations: list[str], served_files: list[str]
) -> None:
    """The seed's walkthrough with the hook: start, `update --cpuset-cpus 0-1 --memory 1G`, then free -m shows
    1024, cpuinfo the two CPUs, and `mount | grep lxcfs` each of the seed's files."""
    cid = podman.run_detached("--memory", "512m", "--cpuset-cpus", "0", *hook_annotations)
    eng.assert_virtualized(_view(podman, cid), memory_bytes=512 << 20, cpus=1, served=served_files)
    # busybox cat reads through sendfile(2); on kernels with the fuse splice bug (see the concurrency test below)
    # it would keep the old, shorter i_size after the update; with the splice guard the update shows at once.
    podman("update", "--cpuset-cpus", "0-1", "--memory", "1G", "--memory-swap", "-1", cid)
    eng.assert_virtualized(_view(podman, cid), memory_bytes=GiB, cpus=2, served=served_files)
    grep = podman.exec(cid, "sh", "-c", "mount | grep lxcfs")
    for path in SEED_FILES:
        assert f"lxcfs on {path} type fuse.lxcfs" in grep, f"{path} missing from `mount | grep lxcfs`:\n{grep}"


def test_seed_limits_at_start_read_by_free_grep_and_mount(
    podman: eng.Podman, hook_annotations: list[str], served_files: list[str]
) -> None:
    """The issue's "done when" literally: a container started with `--memory 1G --cpuset-cpus 0-1` and the hook shows
    1024 MiB in `free -m`, only its CPUs in /proc/cpuinfo and the seed's mount list. Read with read(2) tools only
    (procps free, grep, mount), which the kernel's fuse splice bug (busybox cat, see below) cannot affect."""
    cid = podman.run_detached("--memory", "1G", "--cpuset-cpus", "0-1", *hook_annotations)
    out = podman.exec(cid, "sh", "-c", "/usr/bin/free -m; echo @@; grep -c ^processor /proc/cpuinfo; echo @@; "
                                       "grep MemTotal /proc/meminfo; echo @@; mount | grep lxcfs")
    free_m, processors, memtotal, grep = out.split("@@\n")
    assert eng.free_total_mib(free_m) == 1024, free_m
    assert int(processors) == 2, processors
    assert eng.meminfo_kib(memtotal) == GiB // 1024, memtotal
    for path in [*SEED_FILES, *served_files]:
        assert f"lxcfs on {path} type fuse.lxcfs" in grep, f"{path} missing from `mount | grep lxcfs`:\n{grep}"


def _concurrent_reads(
    podman: eng.Podman, hook_annotations: list[str], reader: str
) -> tuple[Counter[str], Counter[str]]:
    """A (1 GiB, CPU 0) reads meminfo+cpuinfo in a loop while B (512 MiB, CPUs 0-1) reads both 200 times with
    `reader` (a command taking the file name); returns B's MemTotal values and processor counts."""
    a = podman.run_detached("--memory", "1g", "--cpuset-cpus", "0", *hook_annotations)
    b = podman.run_detached("--memory", "512m", "--cpuset-cpus", "0-1", *hook_annotations)
    # A reads until B is done (a stop file), so the two overlap for all of B's reads.
    # Two loops in A: a leak through the shared page cache then shows in several % of B's reads on every run.
    one = "while [ ! -e /tmp/stop ]; do cat /proc/meminfo /proc/cpuinfo >/dev/null; done"
    loop = f"({one}) & ({one}); wait"
    background = subprocess.Popen(["podman", "exec", a, "sh", "-c", loop], env=podman.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = podman.exec(b, "sh", "-c", "i=0; while [ $i -lt 200 ]; do "
                          f"{reader} /proc/meminfo | grep MemTotal; {reader} /proc/cpuinfo | grep -c ^processor; "
                          "i=$((i+1)); done")
    finally:
        podman.exec(a, "touch", "/tmp/stop", check=False)
        background.wait(timeout=60)
    mem = Counter(line.split()[1] for line in out.splitlines() if line.startswith("MemTotal"))
    cpus = Counter(line.strip() for line in out.splitlines() if not line.startswith("MemTotal"))
    return mem, cpus


def test_concurrent_containers_read_syscall_readers_are_isolated(
    podman: eng.Podman, hook_annotations: list[str]
) -> None:
    """Two containers share ONE inode per virtual file (every bind pins the same dentry); the daemon renders per
    open for the caller, so read(2) readers (`head -c`, like coreutils cat, free, top) only ever see their own
    limits while another container reads concurrently."""
    mem, cpus = _concurrent_reads(podman, hook_annotations, "head -c 1000000")
    assert mem == Counter({str(512 << 10): 200}), f"B's MemTotal values over 200 reads: {dict(mem)}"
    assert cpus == Counter({"2": 200}), f"B's processor counts over 200 reads: {dict(cpus)}"


def test_concurrent_containers_never_see_each_others_view(
    podman: eng.Podman, hook_annotations: list[str]
) -> None:
    """The same with busybox `cat`, which uses sendfile(2): since Linux 6.5 (2cb1e08985e3) fuse_splice_read() serves
    FOPEN_DIRECT_IO files from the inode's shared page cache and i_size (upstream fix: "fuse: use copy_splice_read()
    for FOPEN_DIRECT_IO splice read", 2026-05, Cc stable). Measured on this 6.18 kernel: C lxcfs 5.0.3 leaks A's
    MemTotal into ~8% of B's reads. pylxcfs passes by refusing page-cache READs (the splice guard,
    docs/design-fuse.md), so busybox falls back to read(2)."""
    mem, cpus = _concurrent_reads(podman, hook_annotations, "cat")
    assert mem == Counter({str(512 << 10): 200}), f"B's MemTotal values over 200 reads: {dict(mem)}"
    assert cpus == Counter({"2": 200}), f"B's processor counts over 200 reads: {dict(cpus)}"
