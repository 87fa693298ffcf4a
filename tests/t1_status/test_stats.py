"""stats.Stats, the snapshot merge of status.py, identify.py's cgroup conventions, statusdir's files and the
exporter's address parsing: pure or tmp-dir only. Expected numbers are the counts fed in, not our output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pylxcfs import metrics, status, statusdir
from pylxcfs.context import CgroupDir, ContainerContext
from pylxcfs.identify import Identifier, from_cgroup
from pylxcfs.stats import BUCKETS_S, MAX_CONTAINERS, Stats, quantile


def _ctx(init: int, ticks: int = 100, cg: str = "/sys/fs/cgroup/memory/docker/" + "a" * 64) -> ContainerContext:
    d = CgroupDir(cg, False, "/sys/fs/cgroup/memory")
    return ContainerContext(init + 1, init, ticks, d, None, None, None, None)


def test_record_counts_per_container_file_and_reason() -> None:
    s = Stats(clock=lambda: 1000.0)
    for _ in range(5):
        s.record("proc/meminfo", _ctx(10), 40_000)
    s.record("proc/meminfo", _ctx(10), 3_000_000, "CgroupUnavailable", "memory.max: gone")
    s.record("proc/stat", _ctx(20, cg="/sys/fs/cgroup/memory/x"), 10)
    s.record("proc/stat", None, 10, "ProcessGone", "pid 5")
    s.record("proc/stat", None, 10)  # unresolved without a reason is not a fallback: nothing to count
    s.record_host()
    snap = json.loads(json.dumps(s.snapshot()))  # JSON-able
    by = {c["init_pid"]: c for c in snap["containers"]}
    assert set(by) == {10, 20}
    m = by[10]["files"]["proc/meminfo"]
    assert m["requests"] == 6 and m["sum_ns"] == 5 * 40_000 + 3_000_000
    assert sum(m["buckets"]) == 6 and len(m["buckets"]) == len(BUCKETS_S) + 1
    # 40 us falls in the (25 us, 50 us] bucket, 3 ms in (2.5 ms, 5 ms]
    assert m["buckets"][BUCKETS_S.index(50e-6)] == 5 and m["buckets"][BUCKETS_S.index(5e-3)] == 1
    assert by[10]["fallbacks"] == {"proc/meminfo": {"CgroupUnavailable": 1}}
    assert by[10]["last_error"]["message"] == "memory.max: gone"
    assert by[10]["cgroup"].endswith("a" * 64)
    assert snap["unresolved_fallbacks"] == {"proc/stat": {"ProcessGone": 1}}
    assert snap["host_requests"] == 1


def test_prune_and_bound() -> None:
    s = Stats()
    s.record("proc/uptime", _ctx(1), 1)
    s.record("proc/uptime", _ctx(2), 1)
    assert s.prune(lambda pid, _t: pid == 2) == 1
    assert [c["init_pid"] for c in s.snapshot()["containers"]] == [2]
    t = [0.0]

    def clock() -> float:
        t[0] += 1
        return t[0]

    s = Stats(clock=clock)
    for i in range(MAX_CONTAINERS + 3):
        s.record("proc/uptime", _ctx(i + 1), 1)
    pids = {c["init_pid"] for c in s.snapshot()["containers"]}
    assert len(pids) == MAX_CONTAINERS and 1 not in pids and MAX_CONTAINERS + 3 in pids


def test_quantile_reads_bucket_bounds() -> None:
    b = [0] * (len(BUCKETS_S) + 1)
    assert quantile(b, 0.5) is None
    b[2] = 98  # 98 renders <= 100 us
    b[9] = 2  # 2 renders in (10 ms, 25 ms]
    assert quantile(b, 0.5) == BUCKETS_S[2]
    assert quantile(b, 0.99) == BUCKETS_S[9]
    b[-1] = 10  # slower than the last bound
    assert quantile(b, 0.999) == BUCKETS_S[-1]


def test_merge_sums_workers_and_drops_gone_inits() -> None:
    def snap(n: int, pid: int = 10) -> dict[str, object]:
        s = Stats()
        for _ in range(n):
            s.record("proc/meminfo", _ctx(pid), 1000)
        s.record("proc/meminfo", _ctx(pid), 1000, "OSError", "boom")
        return json.loads(json.dumps(s.snapshot()))

    merged = status.merge_containers({1: snap(3), 2: snap(4), 3: snap(9, pid=77)},
                                     alive=lambda pid, _t: pid != 77)
    assert list(merged) == [(10, 100)]
    f = merged[(10, 100)]["files"]["proc/meminfo"]
    assert f["requests"] == 3 + 1 + 4 + 1 and sum(f["buckets"]) == 9
    assert merged[(10, 100)]["fallbacks"] == {"proc/meminfo": {"OSError": 2}}


@pytest.mark.parametrize(("cgroup", "want"), [
    ("/sys/fs/cgroup/memory/docker/" + "ab" * 32, ("ab" * 32, "docker")),
    ("/sys/fs/cgroup/system.slice/docker-" + "cd" * 32 + ".scope", ("cd" * 32, "docker")),
    ("/sys/fs/cgroup/machine.slice/libpod-" + "ef" * 32 + ".scope/container", ("ef" * 32, "podman")),
    ("/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice/crio-" + "01" * 32 + ".scope", ("01" * 32, "cri-o")),
    ("/sys/fs/cgroup/kubepods/besteffort/pod-x/cri-containerd-" + "23" * 32 + ".scope", ("23" * 32, "containerd")),
    ("/sys/fs/cgroup/kubepods/burstable/podabc/" + "45" * 32, ("45" * 32, "kubernetes")),
    ("/sys/fs/cgroup/lxc.payload.web1", ("web1", "lxc")),
    ("/sys/fs/cgroup/user.slice/session-3.scope", None),
])
def test_cgroup_conventions(cgroup: str, want: tuple[str, str] | None) -> None:
    assert from_cgroup(cgroup) == want


def test_identifier_prefers_registry_with_matching_start(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    reg.mkdir()
    rec = {"id": "web", "pid": 4242, "start_time": 99, "rootfs": None, "bundle": None, "name": "frontend",
           "lxcfs_dir": "/x", "stage": "prestart", "registered_at": 1.0}
    (reg / "web.json").write_text(json.dumps(rec))
    ident = Identifier(str(reg), roots=[])
    hit = ident.identify(4242, 99, "/sys/fs/cgroup/memory/some/web")
    assert (hit.id, hit.name, hit.source) == ("web", "frontend", "registry")
    reused = ident.identify(4242, 100, "/sys/fs/cgroup/memory/other/ct9")  # pid reused: not that record
    assert (reused.id, reused.source) == ("ct9", "none")


def test_identifier_takes_the_engine_from_its_state_root_for_a_hooked_container(tmp_path: Path) -> None:
    """A hook's record (id, name) plus containerd's runc state for the same id and init: engine containerd.
    The init is this test process (discovery checks that the pid lives with that start time)."""
    pid = os.getpid()
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])  # field 22, starttime
    reg = tmp_path / "reg"
    reg.mkdir()
    root = tmp_path / "run" / "containerd" / "runc" / "k8s.io"

    def record(cid: str) -> None:
        rec = {"id": cid, "pid": pid, "start_time": ticks, "rootfs": None, "bundle": None, "name": "app",
               "lxcfs_dir": "/x", "stage": "createRuntime", "registered_at": 1.0}
        (reg / f"{cid}.json").write_text(json.dumps(rec))

    def state(cid: str) -> None:
        (root / cid).mkdir(parents=True)
        (root / cid / "state.json").write_text(json.dumps({"init_process_pid": pid, "init_process_start": ticks,
                                                           "config": {"rootfs": "/r"}}))

    cid = "ab" * 32
    record(cid)
    state(cid)
    hit = Identifier(str(reg), roots=[("runc", str(root))]).identify(pid, ticks, "/sys/fs/cgroup/memory/p/" + cid)
    assert (hit.id, hit.name, hit.engine, hit.source) == (cid, "app", "containerd", "registry")
    assert Identifier(str(reg), roots=[]).identify(pid, ticks, "/x/" + cid).engine == "oci-hook"
    # Another id under the same pid in the state root (pid reuse, a stale record) does not lend its engine.
    for p in (reg / f"{cid}.json", root / cid / "state.json"):
        p.unlink()
    (root / cid).rmdir()
    record("web")
    state("cd" * 32)
    other = Identifier(str(reg), roots=[("runc", str(root))]).identify(pid, ticks, "/x/web")
    assert (other.id, other.engine) == ("web", "oci-hook")


def test_statusdir_paths_atomic_files_and_trim(tmp_path: Path) -> None:
    assert statusdir.status_dir_for("/run/pylxcfs.pid") == "/run/pylxcfs.status"
    assert statusdir.status_dir_for("/x/y/lock") == "/x/y/lock.status"
    d = tmp_path / "st"
    statusdir.prepare(str(d))
    statusdir.write_json_atomic(str(d), "supervisor.json", {"pid": 1})
    for pid in range(100, 140):
        statusdir.write_json_atomic(str(d), f"worker-{pid}.json", {"pid": pid})
        os.utime(d / f"worker-{pid}.json", (pid, pid))
    (d / "worker-x.json").write_text("{}")  # not a worker file name: ignored
    (d / "worker-9.json").write_text("[1, 2]")  # not an object: ignored
    sup, workers = statusdir.read_all(str(d))
    assert sup is not None and sup["pid"] == 1 and len(workers) == 40
    assert not [p for p in os.listdir(d) if p.startswith(".tmp-")]

    class W:
        pid, ready, retiring_since = 139, True, None

    class Sup:
        def __init__(self) -> None:
            self.workers = {139: W()}

    statusdir.SupervisorStatus(str(d)).tick(Sup())
    left = sorted(int(n[7:-5]) for n in os.listdir(d) if n.startswith("worker-") and n[7:-5].isdigit())
    # the live worker plus the newest KEEP_EXITED_WORKERS exited ones by mtime (worker-9 is the newest); the oldest go
    assert 139 in left and 100 not in left and len(left) == statusdir.KEEP_EXITED_WORKERS + 1
    assert statusdir.read_all(str(d))[0]["workers"] == [{"pid": 139, "ready": True, "retiring": False}]
    statusdir.prepare(str(d))  # a new daemon starts clean
    assert [n for n in os.listdir(d) if n.endswith(".json")] == []


def test_streamed_snapshot_reads_back_as_the_whole_one(tmp_path: Path) -> None:
    # The worker's file streams its container list (statusdir.JsonArray); a reader must get exactly what the
    # plain dict gives, also with a container pruned while the list is being written.
    s = Stats(clock=lambda: 7.0)
    for i in range(1, 6):
        s.record("proc/meminfo", _ctx(i), 1000 * i)
        s.record("proc/stat", _ctx(i), 10, "CgroupUnavailable", "gone" if i == 3 else None)
    whole = json.loads(json.dumps(s.snapshot()))
    snap = s.snapshot(containers=False)
    snap["containers"] = statusdir.JsonArray(s.each_container)
    statusdir.write_json_atomic(str(tmp_path), "w.json", snap)
    assert json.loads((tmp_path / "w.json").read_text()) == whole

    def pruning() -> list[dict[str, object]]:
        out = []
        for item in s.each_container():
            out.append(item)
            s.prune(lambda pid, _t: pid != 4)  # container 4 goes while 1..3 are being written
        return out

    statusdir.write_json_atomic(str(tmp_path), "w.json", {"a": 1, "containers": statusdir.JsonArray(pruning),
                                                          "none": statusdir.JsonArray(list)})
    back = json.loads((tmp_path / "w.json").read_text())
    assert [c["init_pid"] for c in back["containers"]] == [1, 2, 3, 5] and back["a"] == 1 and back["none"] == []
    statusdir.write_json_atomic(str(tmp_path), "w.json", {"only": statusdir.JsonArray(lambda: iter([{"x": 1}]))})
    assert json.loads((tmp_path / "w.json").read_text()) == {"only": [{"x": 1}]}


@pytest.mark.parametrize(("spec", "kind", "host", "port"), [
    ("127.0.0.1:9100", "tcp", "127.0.0.1", 9100),
    (":9100", "tcp", "0.0.0.0", 9100),
    ("[::1]:9100", "tcp", "::1", 9100),
    ("unix:/run/pylxcfs.metrics", "unix", "", 0),
])
def test_listen_parsing(spec: str, kind: str, host: str, port: int) -> None:
    li = metrics.Listen(spec)
    assert (li.kind, li.host, li.port) == (kind, host, port)


@pytest.mark.parametrize("spec", ["9100", "host:", "host:0", "host:70000", "unix:relative/path", "a:b"])
def test_listen_parsing_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        metrics.Listen(spec)
