"""Files kept open and re-read, and process start times, as pollers and ps see them inside a container-like process.

top, vmstat, htop and mpstat keep /proc/stat (and uptime, meminfo, loadavg) open and pread them from offset 0 at
every sample: each read at offset 0 must be a new render for the reader, or every sample is the first one and top
shows 0% us under a busy loop. ps computes a process's start as btime + starttime / HZ, with starttime counted
from the HOST's boot, so btime must be the host's. The container is PID 1 of a new pid namespace born in a real v1
cgroup with cpuset 1 (not CPU 0), OUR files bound over /proc as lxcfs-hook binds them. Expected figures come from
the kernel's own accounting (the cgroup's cpuacct.usage, the poller's CPU clock) and the test's clock, never from
our output. All of these pass against the C lxcfs 5.0.3 too (PYLXCFS_REALVIEWS_DAEMON=lxcfs), which renders at
every offset-0 read and keeps the host's btime.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time
from collections.abc import Iterator

import pytest

from support import pidns
from support.cgv1 import CgroupTree, V1Cgroup

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

HZ = 100  # USER_HZ


@pytest.fixture(scope="module")
def busy_box(cgtree: CgroupTree) -> Iterator[V1Cgroup]:
    """1 GiB, cpuset.cpus = 1. The area's parent gets a high cpu.shares for the module so that a busy loop in it gets
    most of CPU 1 even on a loaded machine (the checks compare with the measured share anyway)."""
    cg = cgtree.child("rereads", memory_limit=ex.GIB, memsw_limit=ex.GIB, cpus="1")
    shares = cgtree.parent.dir("cpu") / "cpu.shares"
    before = shares.read_text().strip()
    shares.write_text("16384")
    try:
        yield cg
    finally:
        shares.write_text(before)


def _run(ours: Mounted, cg: V1Cgroup, argv: list[str], timeout: float = 60.0) -> str:
    binds = pidns.lxcfs_binds(ours.mnt, required=ours.impl == "pylxcfs")
    return pidns.run(argv, cgroups=[cg], binds=binds, env={"TZ": "UTC"}, timeout=timeout).stdout


# Keeps /proc/stat and /proc/uptime open, preads both at offset 0, burns CPU for 1.2 s, preads again; then reads
# /proc/stat in two pieces (offset 0, then the rest) and reports its own CPU clock over the burn.
_POLLER = r"""
import json, os, time
fs = os.open("/proc/stat", os.O_RDONLY)
fu = os.open("/proc/uptime", os.O_RDONLY)
s1, u1 = os.pread(fs, 1 << 16, 0), os.pread(fu, 4096, 0)
t0, c0 = time.monotonic(), time.process_time()
while time.monotonic() - t0 < 1.2:
    pass
c1, t1 = time.process_time(), time.monotonic()
s2, u2 = os.pread(fs, 1 << 16, 0), os.pread(fu, 4096, 0)
head = os.pread(fs, 64, 0)
tail = os.pread(fs, 1 << 16, 64)
print(json.dumps({"s1": s1.decode(), "s2": s2.decode(), "u1": u1.decode(), "u2": u2.decode(),
                  "cpu": c1 - c0, "wall": t1 - t0, "pieces": (head + tail).decode()}))
"""


def test_pread_at_zero_on_a_kept_open_file_is_a_new_sample(ours: Mounted, busy_box: V1Cgroup) -> None:
    r = json.loads(_run(ours, busy_box, [sys.executable, "-S", "-c", _POLLER]))
    (up1, _), (up2, _) = ex.uptime(r["u1"]), ex.uptime(r["u2"])
    # uptime has 2 decimals: the second sample is later by the poller's own wall clock (+- rounding and the reads)
    assert r["wall"] - 0.05 <= up2 - up1 <= r["wall"] + 0.5, (r["u1"], r["u2"], r["wall"])
    rows1, rows2 = ex.stat_cpus(r["s1"]), ex.stat_cpus(r["s2"])
    # one row for the container's one CPU (its id is the view's business: renumbered 0 or the host's 1)
    assert [x.label for x in rows1] == [x.label for x in rows2] and len(rows1) == 2 and rows1[0].label == "cpu"
    busy1 = rows1[1].cols[0] + rows1[1].cols[2]
    busy2 = rows2[1].cols[0] + rows2[1].cols[2]
    # the cgroup's user+system grew at least by the CPU time the poller itself burned (ticks truncate: -2)
    assert busy2 - busy1 >= int(r["cpu"] * HZ) - 2 > 0, (rows1, rows2, r["cpu"])
    # a read at 0 then one at 64 continue ONE render: a well-formed file whose aggregate equals its only row
    pieces = ex.stat_cpus(r["pieces"])
    assert [x.label for x in pieces] == [x.label for x in rows2] and pieces[0].cols == pieces[1].cols
    assert ex.stat_keys(r["pieces"]) == ex.stat_keys(r["s2"])


def _burn_and(ours: Mounted, cg: V1Cgroup, command: str) -> tuple[str, float]:
    """Run `command` next to a busy loop in the container; return its output and the cgroup's measured share of
    one CPU (percent) over the command's run, from cpuacct.usage (the kernel's accounting, read by the host path)."""
    usage = cg.dir("cpuacct") / "cpuacct.usage"
    script = f"""
( while :; do :; done ) &
sleep 0.3
u0=$(cat {usage}); t0=$(date +%s%N)
{command}
u1=$(cat {usage}); t1=$(date +%s%N)
kill $!
echo "SHARE $u0 $u1 $t0 $t1"
"""
    out = _run(ours, cg, ["sh", "-c", script])
    m = re.search(r"^SHARE (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    assert m, out
    u0, u1, t0, t1 = (int(x) for x in m.groups())
    return out, 100.0 * (u1 - u0) / (t1 - t0)


def test_top_shows_the_busy_loop_as_user_time(ours: Mounted, busy_box: V1Cgroup) -> None:
    out, share = _burn_and(ours, busy_box, "top -bn2 -d1 -1 -w 512")
    # top's second iteration is the delta over its 1 s delay: the container's one CPU is busy in user mode for the
    # share of CPU 1 the cgroup got (other tasks' time on CPU 1 counts as idle inside, as in the C lxcfs).
    cpus = re.findall(r"^%Cpu(\d+)\s*:\s*([\d.]+) us,\s*([\d.]+) sy,.*?([\d.]+) id", out, re.M)
    assert len(cpus) == 2 and cpus[0][0] == cpus[1][0], out  # two iterations, one CPU each
    us, sy, idle = (float(x) for x in cpus[1][1:])
    assert share > 20, f"the busy loop got only {share:.0f}% of CPU 1: machine too loaded to judge\n{out}"
    assert abs(us - share) <= 25, (us, share, out)
    assert us >= 10 and us + sy + idle >= 95, out  # a frozen /proc/stat shows 0.0 us, 100.0 id


def test_vmstat_samples_move(ours: Mounted, busy_box: V1Cgroup) -> None:
    out, share = _burn_and(ours, busy_box, "vmstat 1 3")
    lines = [ln.split() for ln in out.splitlines()]
    header = next(ln for ln in lines if "us" in ln and "id" in ln)
    rows = [ln for ln in lines if len(ln) == len(header) and ln[0].isdigit()]
    assert len(rows) == 3, out
    col = {k: i for i, k in enumerate(header)}
    # rows 2 and 3 are 1 s deltas: the busy loop's user time, not the frozen "100 id" of a file read once
    for row in rows[1:]:
        us, idle = int(row[col["us"]]), int(row[col["id"]])
        assert abs(us - share) <= 25 and us >= 10, (us, idle, share, out)
    assert share > 20, f"the busy loop got only {share:.0f}% of CPU 1: machine too loaded to judge\n{out}"


def _parse_utc(text: str, fmt: str) -> float:
    return dt.datetime.strptime(text.strip(), fmt).replace(tzinfo=dt.UTC).timestamp()


def test_ps_start_times_are_real_and_uptime_s_is_the_container_start(ours: Mounted, busy_box: V1Cgroup) -> None:
    t_before = time.time()
    out = _run(ours, busy_box, ["sh", "-c", "ps -o lstart= -p 1; echo ---; ps -ef; echo ---; uptime -s; echo ---; "
                                            "cat /proc/stat"])
    t_after = time.time()
    lstart, ps_ef, up_s, stat = out.split("---\n")
    # PID 1 started between our two clock readings (ps shows whole seconds, truncated)
    started = _parse_utc(lstart, "%a %b %d %H:%M:%S %Y")
    assert int(t_before) - 1 <= started <= t_after + 1, (lstart, t_before, t_after)
    # ps -ef's STIME (HH:MM for a process of today) of PID 1 and of ps itself: the minute of our clock readings.
    # ps adds the start (jiffies since boot) to btime, which is the boot time rounded DOWN to a second, so its
    # start times are up to 1 s early (0.95 s on this machine's current boot): a container started in the first
    # second of a minute shows the minute before.
    minutes = {time.strftime("%H:%M", time.gmtime(t)) for t in (t_before - 1, t_before, t_after)}
    stimes = {ln.split()[1]: ln.split()[4] for ln in ps_ef.splitlines()[1:] if ln.split()}
    assert stimes["1"] in minutes, (ps_ef, minutes)
    assert set(stimes.values()) <= minutes, (ps_ef, minutes)
    # uptime -s is "now - /proc/uptime": the container's start, not the host's boot
    booted = _parse_utc(up_s, "%Y-%m-%d %H:%M:%S")
    assert int(t_before) - 2 <= booted <= t_after + 1, (up_s, t_before, t_after)
    # and btime is the host's line, unchanged
    assert ex.stat_value(stat, "btime") == ex.stat_value(ex.host_file("/proc/stat"), "btime")
