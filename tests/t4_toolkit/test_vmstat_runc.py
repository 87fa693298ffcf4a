"""procps `vmstat` in a real limited runc container (cpuset "1", 1 GiB, lxcfs-hook at createRuntime binding the
daemon's tree) under a workload of swap-less memory churn and direct block I/O.

Expectations come from the container's own cgroup files read on the host just before and just after (v1 memory
memory.stat `total_*`, blkio.throttle.io_service_bytes_recursive: blk-throttle counts a device only while the
group has a rule, so the bundle sets a 10^12 B/s rule that never throttles, as docs/disks.md says), never from our
daemon: /proc/vmstat's event counters (pgfault, pgmajfault, pgpgin/pgpgout in kB) lie between the two readings,
and are far below the host's. vmstat itself must run and print the container's bi/bo: while the workload writes
its bo column is positive and no larger than what the group wrote during the run; once it stops, bi and bo are 0
(the host's disk keeps being used by everyone else on this machine).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from support import containers as C
from t4_toolkit.conftest import Env, read_in, served_views

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e]

WORKLOAD = (
    "while :; do "
    "dd if=/dev/zero of=/tmp/io bs=1M count=4 oflag=direct 2>/dev/null; "
    "dd if=/tmp/io of=/dev/null bs=1M iflag=direct 2>/dev/null; "
    "dd if=/dev/zero of=/dev/null bs=16M count=4 2>/dev/null; "  # 16 MiB buffer faulted in and freed: churn
    "done"
)


def _whole_disk(dev: int) -> tuple[int, int]:
    """The disk (not partition) holding st_dev `dev`: blk-throttle rules apply to whole disks."""
    sysdir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if (sysdir / "partition").exists():
        sysdir = sysdir.resolve().parent
    major, minor = (sysdir / "dev").read_text().split(":")
    return int(major), int(minor)


def _kv(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in text.splitlines() if ln.strip())}


class Group:
    """The container's v1 memory and blkio directories, from its init's /proc/<pid>/cgroup."""

    def __init__(self, pid: int, disk: tuple[int, int]) -> None:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        paths = {}
        for ln in lines:
            _hid, ctrls, path = ln.split(":", 2)
            for c in ctrls.split(","):
                paths[c] = path
        self.memory = Path("/sys/fs/cgroup/memory" + paths["memory"])
        self.blkio = Path("/sys/fs/cgroup/blkio" + paths["blkio"])
        self.disk = f"{disk[0]}:{disk[1]}"

    def counters(self) -> dict[str, int]:
        st = _kv((self.memory / "memory.stat").read_text())
        io = {"Read": 0, "Write": 0}
        for ln in (self.blkio / "blkio.throttle.io_service_bytes_recursive").read_text().splitlines():
            parts = ln.split()
            if len(parts) == 3 and parts[0] == self.disk and parts[1] in io:
                io[parts[1]] = int(parts[2])
        return {"pgfault": st["total_pgfault"], "pgmajfault": st["total_pgmajfault"],
                "pgpgin": io["Read"] // 1024, "pgpgout": io["Write"] // 1024}


def _vmstat_rows(out: str) -> list[dict[str, int]]:
    lines = out.splitlines()
    assert len(lines) >= 3 and "procs" in lines[0], out
    head = lines[1].split()
    assert head[:4] == ["r", "b", "swpd", "free"] and {"si", "so", "bi", "bo"} <= set(head), out
    rows = [dict(zip(head, map(int, ln.split()), strict=True)) for ln in lines[2:]]
    return rows


def test_vmstat_shows_the_containers_paging_and_block_io(tenv: Env) -> None:
    b = tenv.bundle("vmstat", cpus="1", hook_stage="createRuntime")
    C.add_host_binary(b.rootfs, "/usr/bin/vmstat")
    major, minor = _whole_disk(os.stat(b.rootfs).st_dev)
    rule = [{"major": major, "minor": minor, "rate": 10**12}]
    b.config["linux"]["resources"]["blockIO"] = {"throttleReadBpsDevice": rule, "throttleWriteBpsDevice": rule}
    b.write()
    ct = tenv.runtime.run("vmstat", b)
    try:
        assert "proc/vmstat" in served_views(tenv.lxcfs)
        assert any(m.mountpoint == "/proc/vmstat" and m.is_lxcfs for m in ct.mountinfo())
        grp = Group(ct.pid, (major, minor))
        ct.exec("sh", "-c", f"sh -c '{WORKLOAD}' >/dev/null 2>&1 & echo $! > /tmp/workload.pid", check=True)
        deadline = time.monotonic() + 30
        while grp.counters()["pgpgout"] < 8 * 1024:  # the workload is writing
            assert time.monotonic() < deadline, f"no block I/O accounted: {grp.counters()}"
            time.sleep(0.2)

        # /proc/vmstat's counters against the group's own files, read just before and just after.
        before = grp.counters()
        mine = _kv(read_in(ct, "/proc/vmstat"))
        after = grp.counters()
        host = _kv(Path("/proc/vmstat").read_text())
        for k in before:
            assert before[k] <= mine[k] <= after[k], (k, before, mine, after)
        assert mine["pgfault"] < host["pgfault"] and mine["pgpgout"] < host["pgpgout"]
        # v1 memory.stat has no swap events; this host has no swap, so its pswpin/pswpout are 0 and so are ours.
        assert host["pswpin"] == 0 and mine.get("pswpin") == mine.get("pswpout") == 0, mine
        nr = mine["nr_anon_pages"] + mine["nr_file_pages"]
        assert 0 < nr <= C.GIB // os.sysconf("SC_PAGE_SIZE"), mine

        # vmstat -s prints the raw counters: the same bracket.
        before = grp.counters()
        s = ct.exec("/usr/bin/vmstat", "-s", check=True).stdout
        after = grp.counters()
        paged = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*(\d+) K paged (in|out)$", s, re.M)}
        assert before["pgpgin"] <= paged["in"] <= after["pgpgin"], (before, paged, after)
        assert before["pgpgout"] <= paged["out"] <= after["pgpgout"], (before, paged, after)

        # vmstat 1 3 while the workload runs: rows 2 and 3 are per-second rates of the container's counters.
        before = grp.counters()
        t0 = time.monotonic()
        r = ct.exec("/usr/bin/vmstat", "1", "3", timeout=60, check=True)
        elapsed = time.monotonic() - t0
        after = grp.counters()
        rows = _vmstat_rows(r.stdout)
        assert len(rows) == 3, r.stdout
        written = after["pgpgout"] - before["pgpgout"]
        for row in rows[1:]:
            assert row["si"] == row["so"] == 0, r.stdout
            assert row["bo"] > 0, r.stdout
        # Two rates over intervals of >= 1 s: together at most what the group wrote during the whole run, which
        # lasted >= 2 s (+50% for the container's CPU-time clock vmstat divides by, which is not the wall clock).
        assert sum(row["bo"] for row in rows[1:]) <= 1.5 * written + 10, (r.stdout, written, elapsed)

        # Workload stopped: the container does no I/O, its bi/bo are 0 whatever the host does.
        ct.exec("sh", "-c", "kill $(cat /tmp/workload.pid)", check=True)
        time.sleep(1.5)  # its last dd finishes
        quiet_before = grp.counters()
        r = ct.exec("/usr/bin/vmstat", "1", "2", timeout=60, check=True)
        quiet_after = grp.counters()
        rows = _vmstat_rows(r.stdout)
        if quiet_after["pgpgin"] == quiet_before["pgpgin"] and quiet_after["pgpgout"] == quiet_before["pgpgout"]:
            assert rows[1]["bi"] == rows[1]["bo"] == 0, r.stdout
        else:
            pytest.fail(f"the container still did block I/O after the workload stopped: {quiet_before} "
                        f"{quiet_after}")
    finally:
        ct.stop()
