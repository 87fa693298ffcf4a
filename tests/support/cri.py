"""A CRI client for tests and a standalone containerd with its CRI plugin on, the way a kubelet talks to it.

Role: drive containerd's Kubernetes Container Runtime Interface (gRPC, API runtime.v1) as a kubelet would, with no
kubelet and no crictl (Debian 12 packages neither). The client speaks the CRI's wire contract from
cri_subset.proto beside this file, compiled at test time with grpcio-tools (PyPI) into a test-owned directory;
calls go through grpcio. Only unary calls are used (ExecSync, not the streaming Exec), so no streaming server
is involved.

``CriContainerd``: containerd with its own root, state and socket and the CRI plugin enabled (the ctr harness in
engines.py disables it). Pods run on the host network (NamespaceOption NODE), so no CNI plugin or config is needed
(this machine has none); the sandbox ("pause") image is our busybox rootfs whose command sleeps, imported without a
registry. containerd's CRI keeps its images and containers in the containerd namespace ``k8s.io``; the runc v2
shim keeps runc state under the fixed /run/containerd/runc/k8s.io/<id> (as measured for ``default`` in engines.py).
Extra runtime handlers come in as TOML text appended to the config (the tests append deploy/kubernetes'
fragment), so what is tested is the fragment operators copy.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from support.engines import EngineError, _Harness, _reap, lazy_umount_under, run, stop_pid

PROTO = Path(__file__).with_name("cri_subset.proto")
NAMESPACE = "k8s.io"  # containerd's CRI plugin keeps everything in this containerd namespace


def load_api(outdir: Path) -> ModuleType:
    """Compile cri_subset.proto with grpcio-tools' protoc into outdir and import the message module."""
    from grpc_tools import protoc  # PyPI grpcio-tools (the dev extra)

    if "cri_subset_pb2" in sys.modules:  # protobuf's default pool takes each .proto once per process
        return sys.modules["cri_subset_pb2"]
    outdir.mkdir(parents=True, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={outdir}", str(PROTO)])
    if rc != 0:
        raise EngineError(f"protoc failed ({rc}) on {PROTO}")
    path = outdir / "cri_subset_pb2.py"
    spec = importlib.util.spec_from_file_location("cri_subset_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cri_subset_pb2"] = module
    spec.loader.exec_module(module)
    return module


class CriClient:
    """Unary CRI calls on a unix socket: ``client.runtime("RunPodSandbox", request)`` returns the response."""

    def __init__(self, sock: Path, api: ModuleType):
        import grpc  # PyPI grpcio (the dev extra)

        self.api = api
        self._grpc = grpc
        self.channel = grpc.insecure_channel(f"unix://{sock}")

    def _call(self, service: str, method: str, request: Any, timeout: float) -> Any:
        response_type = getattr(self.api, type(request).__name__.removesuffix("Request") + "Response")
        stub = self.channel.unary_unary(
            f"/runtime.v1.{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        try:
            return stub(request, timeout=timeout)
        except self._grpc.RpcError as e:
            raise EngineError(f"CRI {method} failed: {e.code()} {e.details()}") from None

    def runtime(self, method: str, request: Any, timeout: float = 120) -> Any:
        return self._call("RuntimeService", method, request, timeout)

    def image(self, method: str, request: Any, timeout: float = 60) -> Any:
        return self._call("ImageService", method, request, timeout)

    def exec_sync(self, container_id: str, *cmd: str, timeout: int = 60) -> str:
        """ExecSync: the command's stdout; a non-zero exit is an error with its stderr."""
        r = self.runtime("ExecSync", self.api.ExecSyncRequest(container_id=container_id, cmd=list(cmd),
                                                             timeout=timeout), timeout=timeout + 30)
        if r.exit_code != 0:
            raise EngineError(f"exec {cmd} in {container_id[:12]} exited {r.exit_code}: {r.stderr.decode()!r}")
        return str(r.stdout.decode())

    def close(self) -> None:
        self.channel.close()


class CriContainerd(_Harness):
    """containerd with the CRI plugin, own root/state/socket; ``extra_config`` is appended TOML (handlers)."""

    def __init__(self, base: Path, *, sandbox_image: str, extra_config: str = ""):
        self.base = base
        self.sock = base / "containerd.sock"
        self.config = base / "config.toml"
        self.log = base / "containerd.log"
        self.pod_logs = base / "pod-logs"
        self.sandbox_image = sandbox_image
        self.extra_config = extra_config
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: CriClient | None = None
        self.sandboxes: list[str] = []

    @property
    def runc_state_root(self) -> Path:
        return Path("/run/containerd/runc") / NAMESPACE

    def start(self, api: ModuleType, timeout: float = 60) -> CriContainerd:
        self.base.mkdir(parents=True, exist_ok=True)
        self.pod_logs.mkdir(exist_ok=True)
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        self.config.write_text(
            "version = 2\n"
            f'root = "{self.base}/root"\n'
            f'state = "{self.base}/state"\n'
            "[grpc]\n"
            f'  address = "{self.sock}"\n'
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{self.base}/opt"\n'
            f"{cri}\n"
            f'  sandbox_image = "{self.sandbox_image}"\n'
            # The streaming server (Exec/Attach/PortForward URLs) is not used; keep it on loopback, any port.
            '  stream_server_address = "127.0.0.1"\n'
            '  stream_server_port = "0"\n'
            # The sandbox asks for oom_score_adj -998; lowering it needs CAP_SYS_RESOURCE, which this machine's
            # root lacks (runc's init dies: "can't get final child's PID from pipe"). Clamp to containerd's own.
            "  restrict_oom_score_adj = true\n"
            # No CNI on this machine: empty private dirs, so the plugin reads nothing of the host's.
            f"{cri[:-1]}.cni]\n"
            f'  bin_dir = "{self.base}/cni-bin"\n'
            f'  conf_dir = "{self.base}/cni-conf"\n'
            f"{cri[:-1]}.containerd]\n"
            '  default_runtime_name = "runc"\n'
            f"{cri[:-1]}.containerd.runtimes.runc]\n"
            '  runtime_type = "io.containerd.runc.v2"\n'
            + self.extra_config
        )
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.client = CriClient(self.sock, api)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise EngineError(f"containerd exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.sock.exists():
                try:
                    self.client.runtime("Version", api.VersionRequest(version="v1"), timeout=10)
                    return self
                except EngineError:
                    pass
            time.sleep(0.1)
        raise EngineError(f"containerd's CRI not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(["ctr", "-a", str(self.sock), "-n", NAMESPACE, *args], check=check, timeout=timeout)

    def import_image(self, oci_archive: Path) -> None:
        """`ctr -n k8s.io images import`: the CRI plugin sees images of its namespace without a pull."""
        self.ctr("images", "import", str(oci_archive))

    @property
    def cri(self) -> CriClient:
        assert self.client is not None, "containerd not started"
        return self.client

    def run_pod(self, name: str, *, handler: str, cgroup_parent: str) -> tuple[str, Any]:
        """RunPodSandbox on the host network; returns (sandbox id, the PodSandboxConfig to pass on)."""
        api = self.cri.api
        config = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="pylxcfs-test"),
            log_directory=str(self.pod_logs / name),
            linux=api.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent,
                security_context=api.LinuxSandboxSecurityContext(
                    namespace_options=api.NamespaceOption(network=api.NODE, pid=api.POD, ipc=api.POD)
                ),
            ),
        )
        sid = self.cri.runtime("RunPodSandbox", api.RunPodSandboxRequest(config=config, runtime_handler=handler),
                               timeout=180).pod_sandbox_id
        self.sandboxes.append(sid)
        return sid, config

    def run_container(self, sandbox_id: str, sandbox_config: Any, name: str, image: str, cmd: Sequence[str], *,
                      memory_bytes: int = 0, cpuset: str = "") -> str:
        """CreateContainer + StartContainer in the pod; returns the container id."""
        api = self.cri.api
        config = api.ContainerConfig(
            metadata=api.ContainerMetadata(name=name),
            image=api.ImageSpec(image=image),
            command=list(cmd),
            log_path=f"{name}.log",
            linux=api.LinuxContainerConfig(
                resources=api.LinuxContainerResources(memory_limit_in_bytes=memory_bytes, cpuset_cpus=cpuset),
                security_context=api.LinuxContainerSecurityContext(
                    namespace_options=api.NamespaceOption(network=api.NODE, pid=api.CONTAINER, ipc=api.POD)
                ),
            ),
        )
        cid = self.cri.runtime("CreateContainer", api.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config), timeout=180).container_id
        self.cri.runtime("StartContainer", api.StartContainerRequest(container_id=cid), timeout=180)
        return str(cid)

    def remove_pod(self, sandbox_id: str) -> None:
        """StopPodSandbox (kills its containers) then RemovePodSandbox (removes them), as the kubelet does."""
        api = self.cri.api
        self.cri.runtime("StopPodSandbox", api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=120)
        self.cri.runtime("RemovePodSandbox", api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=120)
        self.sandboxes.remove(sandbox_id)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sid in list(self.sandboxes):
                try:
                    self.remove_pod(sid)
                except EngineError as e:
                    print(f"cleanup: {e}")
            stop_pid(self.proc.pid)
            _reap(self.proc)
        if self.client is not None:
            self.client.close()
        lazy_umount_under(self.base)
