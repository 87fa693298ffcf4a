"""deploy/kubernetes/: every manifest validates against the Kubernetes API schema (kubernetes-validate's bundled
OpenAPI schemas, offline, strict: unknown fields fail), the pieces agree with each other and with the daemon's
defaults, containerd itself accepts the runtime snippet, and the CRI-O hooks.d file is the toolkit's own.
What is not tested here: a kubelet, the CRI path of containerd/CRI-O (no CRI client on this machine)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pylxcfs.ct.plan import DEFAULT_LXCFS_DIR

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy/kubernetes"
K8S_VERSION = "1.30.0"  # a version every supported cluster has; the schemas ship with kubernetes-validate


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def all_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(DEPLOY.glob("*.yaml")) for d in docs(p.name)]


def test_there_are_manifests() -> None:
    kinds = sorted(d["kind"] for _, d in all_docs())
    assert kinds == ["DaemonSet", "Namespace", "Pod", "Pod", "RuntimeClass"], kinds


@pytest.mark.parametrize(("name", "doc"), all_docs(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_manifest_matches_the_api_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def daemonset() -> dict[str, Any]:
    return next(d for d in docs("daemonset.yaml") if d["kind"] == "DaemonSet")


def test_the_validator_rejects_broken_manifests() -> None:
    # The same validation must fail on a typo'd field and on a wrong type, or the test above proves nothing.
    bad = copy.deepcopy(daemonset())
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = copy.deepcopy(daemonset())
    bad["spec"]["template"]["spec"]["hostPID"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_daemonset_shape() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    (ct,) = pod["containers"]
    assert ct["securityContext"]["privileged"] is True
    cmd = ct["command"] + ct["args"]
    assert cmd[-1] == DEFAULT_LXCFS_DIR and "--foreground" in cmd and "--metrics-listen" in cmd
    mounts = {m["mountPath"]: m for m in ct["volumeMounts"]}
    parent = str(Path(DEFAULT_LXCFS_DIR).parent)
    assert mounts[parent]["mountPropagation"] == "Bidirectional"  # the FUSE mount must reach the host
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols[mounts[parent]["name"]]["hostPath"]["path"] == parent
    assert vols[mounts["/dev/fuse"]["name"]]["hostPath"]["type"] == "CharDevice"
    assert vols[mounts["/run/pylxcfs"]["name"]]["hostPath"]["path"] == "/run/pylxcfs"  # the hook's registry
    post = " ".join(ct["lifecycle"]["postStart"]["exec"]["command"])
    assert "check-lxcfs --wait" in post and post.index("check-lxcfs") < post.index("remount --all")
    assert ct["lifecycle"]["preStop"]["exec"]["command"][-2:] == ["umount", "--all"]
    assert ct["livenessProbe"]["exec"]["command"][:2] == ["pylxcfs", "status"]
    port = next(p for p in ct["ports"] if p["name"] == "metrics")["containerPort"]
    assert f":{port}" in cmd


def test_runtimeclass_handler_is_the_containerd_runtime() -> None:
    rc = next(d for d in docs("runtimeclass.yaml") if d["kind"] == "RuntimeClass")
    pod = next(d for d in docs("runtimeclass.yaml") if d["kind"] == "Pod")
    assert pod["spec"]["runtimeClassName"] == rc["metadata"]["name"]
    cfg = tomllib.loads((DEPLOY / "containerd-lxcfs-runc.toml").read_text())
    runtimes = cfg["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert list(runtimes) == [rc["handler"]]
    assert runtimes[rc["handler"]]["runtime_type"] == "io.containerd.runc.v2"
    assert runtimes[rc["handler"]]["options"]["BinaryName"] == "/usr/bin/lxcfs-runc"  # where the package puts it


def test_containerd_accepts_the_runtime_snippet(tmp_path: Path) -> None:
    assert shutil.which("containerd"), "containerd is in APT_TEST (make install)"
    cfg = tmp_path / "config.toml"
    cfg.write_text((DEPLOY / "containerd-lxcfs-runc.toml").read_text())
    out = subprocess.run(["containerd", "--config", str(cfg), "config", "dump"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    dumped = tomllib.loads(out)
    rt = dumped["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["lxcfs-runc"]
    assert rt["runtime_type"] == "io.containerd.runc.v2"
    assert rt["options"]["BinaryName"] == "/usr/bin/lxcfs-runc"


def test_crio_hooks_file_is_the_toolkits(tmp_path: Path) -> None:
    dest = tmp_path / "pylxcfs.json"
    subprocess.run([str(REPO / ".venv/bin/isulad-lxcfs-toolkit"), "install-hook", "--format", "hooksd",
                    "--hook-path", "/usr/bin/lxcfs-hook", "--dest", str(dest)], check=True, timeout=60)
    shipped = json.loads((DEPLOY / "crio-hooks.d.json").read_text())
    assert shipped == json.loads(dest.read_text())
    pod = docs("crio-pod.yaml")[0]
    ann = pod["metadata"]["annotations"]
    (pattern, value), = shipped["when"]["annotations"].items()
    assert any(re.search(pattern, k) and re.search(value, v) for k, v in ann.items()), (shipped["when"], ann)
