"""containerd's CRI path (what a kubelet drives) with lxcfs-runc as the runtime of a RuntimeClass handler.

The pod runs the way deploy/kubernetes sets nodes up: containerd's config gets deploy/kubernetes'
containerd-lxcfs-runc.toml fragment verbatim except for BinaryName (a launcher that points lxcfs-runc at this test's
hook file, instead of /usr/bin/lxcfs-runc from the package), and the pod asks for the handler by name, as the
kubelet does for `runtimeClassName: lxcfs` (runtimeclass.yaml's handler). No kubelet: tests/support/cri.py speaks the
CRI's gRPC API itself. Pods use the host network (no CNI here). A second pod on the default handler (plain runc)
is the control: same limits, no view.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from support import containers as ct
from support import cri as C
from support import engines as eng
from support.engines import Toolkit, host_cpus, host_memtotal_kib, require

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "contrib" / "engines" / "lxcfs-runc"
FRAGMENT = REPO / "deploy" / "kubernetes" / "containerd-lxcfs-runc.toml"
RUNTIMECLASS = REPO / "deploy" / "kubernetes" / "runtimeclass.yaml"
PACKAGED_WRAPPER = "/usr/bin/lxcfs-runc"
PAUSE_REF = "docker.io/library/pylxcfs-pause:test"
MEMORY = 256 << 20  # runtimeclass.yaml's example pod asks for 256Mi

pytestmark = [pytest.mark.root, pytest.mark.e2e, pytest.mark.fuse, pytest.mark.slow]


def _handler_name() -> str:
    """The handler of deploy/kubernetes' RuntimeClass, i.e. what the kubelet sends as runtime_handler."""
    import yaml

    docs = [d for d in yaml.safe_load_all(RUNTIMECLASS.read_text()) if d and d.get("kind") == "RuntimeClass"]
    assert len(docs) == 1, docs
    return str(docs[0]["handler"])


def _status_row(lxcfs: ct.Daemon, toolkit: Toolkit, cid: str, timeout: float = 30) -> dict[str, Any]:
    """The container's row of `pylxcfs status --json` once the daemon has published its reads (each second)."""
    end = time.monotonic() + timeout
    while True:
        r = subprocess.run([str(eng.VENV_BIN / "pylxcfs"), "status", "--json", "-p", str(lxcfs.pidfile),
                            "--registry-dir", str(toolkit.registry_dir), str(lxcfs.mountpoint)],
                           capture_output=True, text=True, timeout=60, check=False)
        rows = [row for row in json.loads(r.stdout)["containers"] if row["id"] == cid]
        if rows and rows[0]["files_by_name"].get("proc/meminfo"):
            return dict(rows[0])
        assert time.monotonic() < end, f"no status row with reads for {cid}:\n{r.stdout}\n{r.stderr}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return C.load_api(tmp_path_factory.mktemp("cri-api"))


@pytest.fixture(scope="module")
def containerd(
    tmp_path_factory: pytest.TempPathFactory, api: ModuleType, busybox_image: eng.BusyboxImage, toolkit: Toolkit
) -> Iterator[C.CriContainerd]:
    require("containerd", "ctr", "runc", "jq")
    base = tmp_path_factory.mktemp("cri")
    hooks = base / "runc-hooks.json"
    toolkit("install-hook", "--format", "runc", "--dest", str(hooks))
    launcher = base / "lxcfs-runc-test"
    launcher.write_text(f'#!/bin/sh\nLXCFS_RUNC_HOOKS={hooks} exec {WRAPPER} "$@"\n')
    launcher.chmod(0o755)
    fragment = FRAGMENT.read_text()
    assert fragment.count(f'"{PACKAGED_WRAPPER}"') == 1, "the fragment no longer names the packaged wrapper"
    # `version = 2` is the config's own first line already; the rest is appended as operators merge it.
    body = "\n".join(line for line in fragment.splitlines() if line.strip() != "version = 2")
    pause = eng.build_oci_archive(busybox_image.tarball, base / "pause-oci.tar", ref=PAUSE_REF,
                                  cmd=("sleep", "2147483647"))
    daemon = C.CriContainerd(base / "containerd", sandbox_image=PAUSE_REF,
                             extra_config="\n" + body.replace(PACKAGED_WRAPPER, str(launcher)) + "\n")
    try:
        daemon.start(api)
        daemon.import_image(busybox_image.oci_archive)
        daemon.import_image(pause)
        yield daemon
    finally:
        daemon.close()


def test_cri_version_is_containerd_v1(containerd: C.CriContainerd, api: ModuleType) -> None:
    v = containerd.cri.runtime("Version", api.VersionRequest(version="v1"))
    assert v.runtime_name == "containerd" and v.runtime_api_version == "v1", v
    img = containerd.cri.image("ImageStatus", api.ImageStatusRequest(image=api.ImageSpec(image=eng.OCI_REF)))
    assert eng.OCI_REF in img.image.repo_tags, img


def test_runtimeclass_handler_gives_the_pod_its_view(
    containerd: C.CriContainerd, api: ModuleType, cgroup_parent: str, toolkit: Toolkit, served_files: list[str],
    lxcfs: ct.Daemon,
) -> None:
    handler = _handler_name()
    pid = os.getpid()
    sid, sconf = containerd.run_pod(f"lxcfs-{pid}", handler=handler, cgroup_parent=f"/{cgroup_parent}/cri-lxcfs")
    status = containerd.cri.runtime("PodSandboxStatus", api.PodSandboxStatusRequest(pod_sandbox_id=sid))
    assert status.status.runtime_handler == handler and status.status.state == api.SANDBOX_READY, status
    cid = containerd.run_container(sid, sconf, "app", eng.OCI_REF, ("sleep", "1000"), memory_bytes=MEMORY,
                                   cpuset="0")

    # Independent of our files: containerd says which binary it started the container with.
    info = containerd.cri.runtime("ContainerStatus", api.ContainerStatusRequest(container_id=cid, verbose=True))
    assert info.status.state == api.CONTAINER_RUNNING, info.status
    detail = json.loads(info.info["info"])
    assert detail["runtimeType"] == "io.containerd.runc.v2", detail.get("runtimeType")
    assert detail["runtimeOptions"]["binary_name"].endswith("lxcfs-runc-test"), detail["runtimeOptions"]
    # The kernel's own limit, which the view must match.
    cg = Path(f"/sys/fs/cgroup/memory/{cgroup_parent}/cri-lxcfs")
    limits = {int(p.read_text()) for p in cg.glob("*/memory.limit_in_bytes")}
    assert MEMORY in limits, f"no container cgroup under {cg} has memory.limit_in_bytes {MEMORY}: {limits}"

    def view() -> eng.InsideView:
        return eng.inside_view(lambda *cmd: containerd.cri.exec_sync(cid, *cmd))

    eng.assert_virtualized(view(), memory_bytes=MEMORY, cpus=1, served=served_files)
    state = json.loads((containerd.runc_state_root / cid / "state.json").read_text())
    row = _status_row(lxcfs, toolkit, cid)
    # The hook's record names it, containerd's runc state says which engine; the init is the state's.
    assert row["engine"] == "containerd" and row["init_pid"] == state["init_process_pid"], row
    assert row["mounted"]["proc/meminfo"] == "ok" and row["files_by_name"]["proc/meminfo"]["requests"] >= 1, row

    # What the DaemonSet relies on after a daemon restart: the toolkit finds a CRI-made container through
    # containerd's runc state (namespace k8s.io), not the /proc scan, and remounts it without stacking.
    assert (containerd.runc_state_root / cid / "state.json").is_file()
    toolkit("umount", "--container-id", cid, "--no-procscan")
    eng.assert_host_view(view(), host_memtotal_kib=host_memtotal_kib(), host_cpus=host_cpus())
    assert _status_row(lxcfs, toolkit, cid)["mounted"]["proc/meminfo"] == "missing"
    toolkit("remount", "--container-id", cid, "--no-procscan")
    eng.assert_virtualized(view(), memory_bytes=MEMORY, cpus=1, served=served_files)
    assert _status_row(lxcfs, toolkit, cid)["mounted"]["proc/meminfo"] == "ok"

    containerd.remove_pod(sid)
    assert not (containerd.runc_state_root / cid).exists()


def test_default_handler_pod_is_the_control(containerd: C.CriContainerd, cgroup_parent: str) -> None:
    """The same pod on the default handler (plain runc): same limit in the kernel, the host's files inside."""
    sid, sconf = containerd.run_pod(f"plain-{os.getpid()}", handler="", cgroup_parent=f"/{cgroup_parent}/cri-plain")
    cid = containerd.run_container(sid, sconf, "app", eng.OCI_REF, ("sleep", "1000"), memory_bytes=MEMORY,
                                   cpuset="0")
    view = eng.inside_view(lambda *cmd: containerd.cri.exec_sync(cid, *cmd))
    assert not view.lxcfs, view.mountinfo
    assert view.memtotal_kib == host_memtotal_kib()
    containerd.remove_pod(sid)
