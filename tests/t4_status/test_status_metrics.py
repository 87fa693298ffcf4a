"""`pylxcfs status --json` and the Prometheus endpoint against a real runc container set up by lxcfs-hook.

The daemon runs with --metrics-listen on a unix socket and on a loopback TCP port. N reads of /proc/meminfo
inside the container (each one a fresh `grep` that opens the file) must move the container's counters by
exactly N, in status and in the metrics, under the container's runc id (from the hook's registry). The
container's content is checked independently (MemTotal is the 1 GiB limit we set). A SIGSTOPped daemon must
not hang status: it returns and says hung. A container that is gone loses its series.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import containers as C

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e]

PYLXCFS = str(C.VENV_BIN / "pylxcfs")
HOOK = str(C.VENV_BIN / "lxcfs-hook")
N = 7


@dataclass
class SEnv:
    base: Path
    runtime: C.Runtime
    cgroup: str
    lxcfs: Path
    registry: Path
    daemon: C.Daemon
    sock: Path
    port: int

    def status(self, *extra: str, timeout: float = 60) -> tuple[int, dict[str, object]]:
        r = subprocess.run([PYLXCFS, "status", "--json", "-p", str(self.daemon.pidfile), "--registry-dir",
                            str(self.registry), *extra, str(self.lxcfs)], capture_output=True, text=True,
                           timeout=timeout, check=False)
        assert r.stdout, r.stderr
        return r.returncode, json.loads(r.stdout)

    def run(self, name: str) -> C.Container:
        b = C.make_bundle(self.base, name, memory_bytes=C.GIB, cpus="0", cgroup_parent=self.cgroup)
        b.add_hook("createRuntime", HOOK, ["lxcfs-hook", "--stage", "createRuntime", "--lxcfs-dir", str(self.lxcfs),
                                           "--registry-dir", str(self.registry), "--log", str(self.base / "hook.log")],
                   timeout=20)
        return self.runtime.run(name, b)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def senv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SEnv]:
    assert os.geteuid() == 0 and C.BUSYBOX.exists()
    base = tmp_path_factory.mktemp("status")
    registry = base / "registry"
    sock = base / "metrics.sock"
    port = _free_port()
    # The exporter names containers from the hook's registry: it inherits the daemon's environment.
    with mock.patch.dict(os.environ, {"PYLXCFS_REGISTRY_DIR": str(registry), "PYLXCFS_STATE_ROOTS": ""}):
        daemon = C.start_daemon(base / "lxcfs", workdir=base,
                                args=["--metrics-listen", f"unix:{sock}", "--metrics-listen", f"127.0.0.1:{port}"])
    env = SEnv(base, C.Runtime(base / "runc-root"), C.cgroup_parent_name("status"), base / "lxcfs", registry, daemon,
               sock, port)
    try:
        yield env
    finally:
        env.runtime.cleanup()
        daemon.stop()
        C.remove_cgroup_parent(env.cgroup)


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def scrape(conn: http.client.HTTPConnection) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read().decode()
    assert resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/plain"), body[:200]
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    conn.close()
    return out


def requests_of(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], cid: str, file: str) -> float | None:
    return samples.get(("pylxcfs_requests_total", (("container", cid), ("file", file))))


def row_of(st: dict[str, object], cid: str) -> dict[str, object] | None:
    return next((r for r in st["containers"] if r["id"] == cid), None)  # type: ignore[attr-defined,index]


def meminfo_requests(st: dict[str, object], cid: str) -> int:
    row = row_of(st, cid)
    if row is None:
        return 0
    f = row["files_by_name"].get("proc/meminfo")  # type: ignore[index,union-attr]
    return int(f["requests"]) if f else 0  # type: ignore[index]


def wait_for(pred: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s: {what}")


def test_counters_move_by_exactly_n_reads(senv: SEnv) -> None:
    ct = senv.run("stat-a")
    other = senv.run("stat-b")  # a second container whose counters must not move
    _, st0 = senv.status()
    before = meminfo_requests(st0, ct.id)
    before_other = meminfo_requests(st0, other.id)
    for _ in range(N):
        out = ct.exec("grep", "^MemTotal:", "/proc/meminfo", check=True).stdout
        assert int(out.split()[1]) == C.GIB // 1024, out  # the container's own view, not the host's
    wait_for(lambda: meminfo_requests(senv.status()[1], ct.id) >= before + N, 30, "status to count the reads")
    time.sleep(2.5)  # two more publishing rounds: nothing else may have been counted
    rc, st = senv.status()
    assert rc == 0 and st["health"] == "serving", st
    assert meminfo_requests(st, ct.id) == before + N
    assert meminfo_requests(st, other.id) == before_other
    row = row_of(st, ct.id)
    assert row is not None
    assert row["init_pid"] == ct.pid and row["id_source"] == "registry", row
    assert row["p50_s"] is not None and row["p99_s"] is not None and row["p50_s"] <= row["p99_s"]
    # the hook mounted every served file: the container's own mount table says ok, for this daemon's device
    mounted = row["mounted"]
    assert mounted["proc/meminfo"] == "ok" and mounted["proc/cpuinfo"] == "ok", mounted
    assert st["supervisor"]["alive"] and st["workers"], st  # type: ignore[index]
    assert st["mountpoint"]["mounted"] and st["version"]  # type: ignore[index]

    for conn in (_UnixHTTP(str(senv.sock)), http.client.HTTPConnection("127.0.0.1", senv.port, timeout=30)):
        samples = scrape(conn)
        assert requests_of(samples, ct.id, "proc/meminfo") == before + N
        assert samples[("pylxcfs_render_seconds_count", (("container", ct.id), ("file", "proc/meminfo")))] \
            == before + N
        info = [k for k in samples if k[0] == "pylxcfs_container_info" and ("container", ct.id) in k[1]]
        assert info and ("init_pid", str(ct.pid)) in info[0][1]
        assert samples[("pylxcfs_up", ())] == 1
        assert any(k[0] == "pylxcfs_process_resident_memory_bytes" and ("role", "worker") in k[1] for k in samples)

    # Gone containers are dropped (bounded cardinality): no series and no row once its init is dead.
    ct.stop()
    wait_for(lambda: requests_of(scrape(_UnixHTTP(str(senv.sock))), ct.id, "proc/meminfo") is None, 30,
             "the stopped container's series to go")
    assert row_of(senv.status()[1], ct.id) is None
    assert row_of(senv.status()[1], other.id) is not None or before_other == 0


def test_files_mounted_from_another_daemon_are_stale(senv: SEnv) -> None:
    """What a daemon restart leaves behind, made with two live daemons: the container's files come from daemon B's
    mount, so daemon A's status says stale; `remount` from A makes them ok again. Mount ownership is read from the
    container's own mount table (the FUSE device of each mount), compared with the device of A's mount point."""
    ct = senv.run("stat-c")
    ct.exec("grep", "^MemTotal:", "/proc/meminfo", check=True)
    wait_for(lambda: meminfo_requests(senv.status()[1], ct.id) >= 1, 30, "a row for the container")
    assert row_of(senv.status()[1], ct.id)["mounted"]["proc/meminfo"] == "ok"  # type: ignore[index]
    other = C.start_daemon(senv.base / "lxcfs-b", workdir=senv.base)

    def toolkit(lxcfs_dir: Path) -> None:
        r = subprocess.run([str(C.VENV_BIN / "isulad-lxcfs-toolkit"), "--lxcfs-dir", str(lxcfs_dir), "--registry-dir",
                            str(senv.registry), "remount", "--container-id", ct.id, "--no-procscan"],
                           capture_output=True, text=True, timeout=120, check=False,
                           env=dict(os.environ, PYLXCFS_STATE_ROOTS=""))
        assert r.returncode == 0, r.stderr

    try:
        toolkit(other.mountpoint)
        b_dev = f"{os.major(os.stat(other.mountpoint).st_dev)}:{os.minor(os.stat(other.mountpoint).st_dev)}"
        devs = {m.dev for m in ct.host_mountinfo() if m.mountpoint == "/proc/meminfo" and m.is_lxcfs}
        assert devs == {b_dev}, (devs, b_dev)  # independent of status: B's mount is the one in the container
        files = row_of(senv.status()[1], ct.id)["mounted"]  # type: ignore[index]
        assert files["proc/meminfo"] == "stale" and "ok" not in files.values(), files
        toolkit(senv.lxcfs)
        assert row_of(senv.status()[1], ct.id)["mounted"]["proc/meminfo"] == "ok"  # type: ignore[index]
    finally:
        other.stop()
        ct.stop()


def test_status_of_a_stopped_daemon_returns_and_says_hung(senv: SEnv) -> None:
    senv.daemon.sigstop()
    try:
        t0 = time.monotonic()
        rc, st = senv.status("--timeout", "1", timeout=120)  # a generous bound; status must not block on FUSE
        elapsed = time.monotonic() - t0
    finally:
        senv.daemon.sigcont()
    assert rc == 4 and st["health"] == "hung", st
    assert "stopped" in str(st["hung_reason"]), st
    print(f"status of a stopped daemon took {elapsed:.2f}s")
    wait_for(lambda: senv.status()[1]["health"] == "serving", 30, "serving again after SIGCONT")


def test_metrics_listen_errors_are_clear(tmp_path: Path) -> None:
    r = subprocess.run([PYLXCFS, "--metrics-listen", "nonsense", str(tmp_path / "m")], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 2 and "expected ADDR:PORT" in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mnt = tmp_path / "m"
        r = subprocess.run([PYLXCFS, "-f", "-p", str(tmp_path / "p.pid"), "--metrics-listen", f"127.0.0.1:{port}",
                            str(mnt)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr, r.stderr
    assert C.mounts_at(mnt) == [], "nothing may be mounted after a failed start"


def test_status_without_a_daemon(tmp_path: Path) -> None:
    r = subprocess.run([PYLXCFS, "status", "--json", "-p", str(tmp_path / "none.pid"), str(tmp_path / "mnt")],
                       capture_output=True, text=True, timeout=60, check=False)
    st = json.loads(r.stdout)
    assert r.returncode == 1 and st["health"] == "not-running" and st["containers"] == []
    r = subprocess.run([PYLXCFS, "status", "-p", str(tmp_path / "none.pid"), str(tmp_path / "mnt")],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "NOT-RUNNING" in r.stdout
