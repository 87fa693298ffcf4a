"""containerd 1.6 standalone + ctr: remount/umount into a running `ctr run -d` container.

containerd has no hooks.d; its runc v2 shim keeps runc state in /run/containerd/runc/<namespace>/<id> (measured,
whatever containerd's `state` is), which is one of the runc-style roots the toolkit's discovery reads. `ctr run` has
no cpuset flag, so the test writes cpuset.cpus into the container's own cgroup (a path it chose with --cgroup)
after the start: a real kernel limit, the same one `docker update --cpuset-cpus` would write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import engines as eng
from support.engines import GiB, Toolkit, host_cpus, host_memtotal_kib, require

WRAPPER = Path(__file__).resolve().parents[2] / "contrib" / "engines" / "lxcfs-runc"

pytestmark = [pytest.mark.root, pytest.mark.e2e, pytest.mark.fuse]


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory, busybox_image: eng.BusyboxImage) -> Iterator[eng.Containerd]:
    require("containerd", "ctr", "runc")
    daemon = eng.Containerd(tmp_path_factory.mktemp("containerd"))
    try:
        daemon.start()
        daemon.import_image(busybox_image.oci_archive)
        yield daemon
    finally:
        daemon.close()


def test_remount_into_ctr_container(
    containerd: eng.Containerd, cgroup_parent: str, toolkit: Toolkit, served_files: list[str]
) -> None:
    cid = f"pylxcfs-eng-{os.getpid()}-c1"
    cgroup = f"{cgroup_parent}/{cid}"
    containerd.run_detached(cid, "--cgroup", f"/{cgroup}", "--memory-limit", str(GiB))
    Path(f"/sys/fs/cgroup/cpuset/{cgroup}/cpuset.cpus").write_text("0")
    state = containerd.runc_state_root / cid / "state.json"
    assert state.is_file(), f"containerd's runc state is not where measured: {state}"

    def view() -> eng.InsideView:
        return eng.inside_view(lambda *cmd: containerd.exec(cid, *cmd))

    eng.assert_host_view(view(), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())

    # --no-procscan: the container must be found through containerd's runc state root, not the /proc fallback.
    toolkit("remount", "--container-id", cid, "--no-procscan")
    eng.assert_virtualized(view(), memory_bytes=GiB, cpus=1, served=served_files)

    toolkit("remount", "--container-id", cid)  # twice: no stacking
    eng.assert_virtualized(view(), memory_bytes=GiB, cpus=1, served=served_files)

    toolkit("umount", "--container-id", cid)
    eng.assert_host_view(view(), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())


def test_runc_binary_wrapper_injects_the_hook(
    containerd: eng.Containerd, cgroup_parent: str, toolkit: Toolkit, served_files: list[str]
) -> None:
    """`ctr run --runc-binary lxcfs-runc` (contrib/engines): the hook from `install-hook --format runc` runs at
    create, so the view is there from the start without any remount."""
    hooks = containerd.base / "runc-hooks.json"
    toolkit("install-hook", "--format", "runc", "--dest", str(hooks))
    launcher = containerd.base / "lxcfs-runc-test"
    launcher.write_text(f'#!/bin/sh\nLXCFS_RUNC_HOOKS={hooks} exec {WRAPPER} "$@"\n')
    launcher.chmod(0o755)
    cid = f"pylxcfs-eng-{os.getpid()}-c2"
    containerd.run_detached(cid, "--cgroup", f"/{cgroup_parent}/{cid}", "--memory-limit", str(GiB),
                            "--runc-binary", str(launcher))
    view = eng.inside_view(lambda *cmd: containerd.exec(cid, *cmd))
    # No cpuset was set on this one: the view must show every host CPU, and the 1 GiB limit.
    eng.assert_virtualized(view, memory_bytes=GiB, cpus=host_cpus(), served=served_files)
