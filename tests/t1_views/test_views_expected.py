"""Expected numbers derived by hand from each fixture's limits (see tools/make_synthetic_fixtures.py and the
MANIFEST.toml files), independent of the golden files; plus fallback behaviour and properties."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylxcfs.cgroups.memory import MemorySnapshot, MemoryStat, SwapUsage
from pylxcfs.hostfs import HostRoot
from pylxcfs.parse.meminfo import parse_meminfo
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.meminfo import render_meminfo
from pylxcfs.views.uptime import render_uptime
from support.hosts import container_hosts, golden_path, manifest

from .conftest import GOLDEN, HOSTS

MiB_KB = 1024


def _kv(text: str) -> dict[str, int]:
    return {ln.partition(":")[0]: int(ln.split()[1]) for ln in text.splitlines()}


def _render(host: str, path: str, pid: int = 4243, **opts: bool) -> tuple[str, Renderer]:
    r = Renderer(HostRoot.from_dir(HOSTS / host), ViewOptions(**opts))
    return r.render(path, pid).decode(), r


@pytest.mark.parametrize(
    ("host", "total", "used_kb", "avail_extra_kb", "swap_total", "swap_used"),
    [
        # 512 MiB limit, 200 MiB used, active_file 40 + inactive_file 30 + slab_reclaimable 4 MiB; swap.max 256 MiB,
        # 10 MiB swapped
        ("x86_64-unified-ubuntu22", 512 * MiB_KB, 200 * MiB_KB, 74 * MiB_KB, 256 * MiB_KB, 10 * MiB_KB),
        # 1 GiB limit, 300 MiB used, file 50+30 MiB; memsw 1.5 GiB - 1 GiB = 512 MiB swap, 320-300 = 20 MiB used
        ("x86_64-legacy-centos7", 1024 * MiB_KB, 300 * MiB_KB, 80 * MiB_KB, 512 * MiB_KB, 20 * MiB_KB),
        # swap accounting off: 0/0 although the host has 1 GiB of swap
        ("x86_64-legacy-noswapacct", 256 * MiB_KB, 64 * MiB_KB, 20 * MiB_KB, 0, 0),
        # limit only on the ancestor a (1 GiB); swap unlimited -> host SwapTotal 2097148 kB, 1 MiB used
        ("x86_64-unified-ancestorlimit", 1024 * MiB_KB, 300 * MiB_KB, 92 * MiB_KB, 2097148, 1 * MiB_KB),
    ],
)
def test_meminfo_numbers(host: str, total: int, used_kb: int, avail_extra_kb: int, swap_total: int,
                         swap_used: int) -> None:
    out, r = _render(host, "proc/meminfo")
    v = _kv(out)
    assert v["MemTotal"] == total
    assert v["MemFree"] == total - used_kb
    assert v["MemAvailable"] == total - used_kb + avail_extra_kb
    assert v["SwapTotal"] == swap_total
    assert v["SwapFree"] == swap_total - swap_used
    assert v["Buffers"] == 0
    host_keys = [ln.partition(":")[0] for ln in (HOSTS / host / "proc/meminfo").read_text().splitlines()]
    assert [ln.partition(":")[0] for ln in out.splitlines()] == host_keys
    swaps = r.render("proc/swaps", 4243).decode().splitlines()
    if swap_total:
        assert swaps[1].split() == ["none", "virtual", str(swap_total), str(swap_used), "0"]
    else:
        assert len(swaps) == 1


def test_captured_hybrid_meminfo_follows_its_cgroup_files() -> None:
    cg = HOSTS / "x86_64-hybrid-debian12/sys/fs/cgroup/memory/lxc/ct"
    usage_kb = int((cg / "memory.usage_in_bytes").read_text()) // 1024
    stat = dict(ln.split() for ln in (cg / "memory.stat").read_text().splitlines())
    v = _kv(_render("x86_64-hybrid-debian12", "proc/meminfo")[0])
    assert v["MemTotal"] == 524288  # the capture set 512 MiB on lxc/ct (1 GiB on lxc)
    assert v["MemFree"] == max(0, 524288 - usage_kb)
    assert v["Cached"] == int(stat["total_cache"]) // 1024
    assert v["SwapTotal"] == 0  # this machine has no swap


def test_disable_swap_zeroes_swap() -> None:
    out, r = _render("x86_64-unified-ubuntu22", "proc/meminfo", disable_swap=True)
    v = _kv(out)
    assert v["SwapTotal"] == 0 and v["SwapFree"] == 0
    assert r.render("proc/swaps", 4243).decode().count("\n") == 1


def test_zero_swap_max_shows_no_swap() -> None:
    # ct2 has memory.swap.max 0
    v = _kv(_render("x86_64-unified-ubuntu22", "proc/meminfo", pid=5253)[0])
    assert v["SwapTotal"] == 0 and v["SwapFree"] == 0


def test_kernel_without_memavailable_gets_none_invented() -> None:
    out = _render("x86_64-legacy-nomemavail", "proc/meminfo")[0]
    assert "MemAvailable" not in out
    v = _kv(out)
    assert v["MemTotal"] == 512 * MiB_KB and v["MemFree"] == 412 * MiB_KB
    assert v["SwapTotal"] == 0  # memsw == limit: no swap allowed


def test_init_scope_pruned_to_the_container_cgroup() -> None:
    # init 5252 sits in ct2/init.scope (128 MiB); the container's limit is ct2's 1 GiB (spec §4.1, LXCFS 9.3)
    v = _kv(_render("x86_64-unified-ubuntu22", "proc/meminfo", pid=5253)[0])
    assert v["MemTotal"] == 1024 * MiB_KB
    assert v["MemFree"] == 924 * MiB_KB


def test_host_caller_gets_the_host_file_unchanged() -> None:
    for host in ("x86_64-unified-ubuntu22", "x86_64-hybrid-debian12"):
        r = Renderer(HostRoot.from_dir(HOSTS / host), ViewOptions(enable_loadavg=True))
        for view in ("meminfo", "swaps", "uptime", "loadavg"):
            assert r.render(f"proc/{view}", 100) == (HOSTS / host / "proc" / view).read_bytes()
        assert not r.fallbacks


def test_vanished_pid_gets_the_host_file() -> None:
    out, r = _render("x86_64-unified-ubuntu22", "proc/meminfo", pid=99999)
    assert out == (HOSTS / "x86_64-unified-ubuntu22/proc/meminfo").read_text()
    assert r.fallbacks == {("proc/meminfo", "ProcessGone"): 1}


def test_cgroup_without_memory_files_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    host = "x86_64-unified-ancestorlimit"
    r = Renderer(HostRoot.from_dir(HOSTS / host), ViewOptions())
    with caplog.at_level(logging.WARNING, logger="pylxcfs.service"):
        for _ in range(3):
            assert r.render("proc/meminfo", 6262) == (HOSTS / host / "proc/meminfo").read_bytes()
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1  # rate-limited per (view, exception type)
    msg = warnings[0].getMessage()
    assert "proc/meminfo" in msg and "6262" in msg and "CgroupUnavailable" in msg and "memory.stat" in msg
    assert r.fallbacks == {("proc/meminfo", "CgroupUnavailable"): 3}


def test_uptime_numbers() -> None:
    # ubuntu22: host uptime 4000.50 s, init started at 100000 ticks = 1000 s, cpu.stat usage 30 s
    assert _render("x86_64-unified-ubuntu22", "proc/uptime")[0] == "3000.50 2970.50\n"
    # centos7: 86400 - 80000 s; cpuacct.usage 120 s (v1, combined cpu,cpuacct hierarchy)
    assert _render("x86_64-legacy-centos7", "proc/uptime")[0] == "6400.00 6280.00\n"


def test_uptime_busy_above_age_gives_idle_equal_age() -> None:
    # LXCFS §9.1: "cgroup busy 21.7 s from earlier runs > age 3.06 s -> idle = age"
    assert render_uptime(1003.06, 100000, 21.7, clk_tck=100) == "3.06 3.06\n"
    assert render_uptime(5.0, 1000, 0.0, clk_tck=100) == "0.00 0.00\n"  # clock skew never goes negative


def test_loadavg_without_l_is_host() -> None:
    out, _ = _render("x86_64-unified-ubuntu22", "proc/loadavg")
    assert out == (HOSTS / "x86_64-unified-ubuntu22/proc/loadavg").read_text()


def test_loadavg_first_read_with_l() -> None:
    assert _render("x86_64-legacy-centos7", "proc/loadavg", enable_loadavg=True)[0] == "0.00 0.00 0.00 0/1 4242\n"


@pytest.mark.parametrize("host", [h for h in container_hosts() if golden_path(h, "loadavg").exists()])
def test_loadavg_goldens_are_first_reads(host: str) -> None:
    # The golden harness renders with -l on a fresh Renderer: no sampler pass yet, so zero averages, 0 running of
    # 1 (the init counted until the first pass) and the init as last pid (views/loadavg.py LoadNode defaults).
    want = f"0.00 0.00 0.00 0/1 {manifest(host)['container_init_pid']}\n"
    assert golden_path(host, "loadavg").read_text() == want


# ---------------------------------------------------------------- properties

HOST_TEXT = (HOSTS / "x86_64-unified-ubuntu22/proc/meminfo").read_text()
_b = st.integers(0, 1 << 44)


@settings(max_examples=300, deadline=None)
@given(limit=st.none() | _b, usage=_b, stat=st.lists(_b, min_size=17, max_size=17),
       swap=st.none() | st.tuples(st.none() | _b, _b), swappiness=st.none() | st.integers(0, 100),
       disable_swap=st.booleans(), host_total=st.integers(1, 1 << 40), host_swap=st.integers(0, 1 << 40))
def test_meminfo_never_negative_and_keeps_every_host_key(limit: int | None, usage: int, stat: list[int],
                                                         swap: tuple[int | None, int] | None,
                                                         swappiness: int | None, disable_swap: bool,
                                                         host_total: int, host_swap: int) -> None:
    text = HOST_TEXT.replace("MemTotal:       16384000 kB", f"MemTotal:       {host_total:8d} kB").replace(
        "SwapTotal:       2097148 kB", f"SwapTotal:       {host_swap:8d} kB")
    fields = [f for f in MemoryStat.__dataclass_fields__ if not f.startswith("has_") and "hierarchical" not in f]
    ms = MemoryStat(**dict(zip(fields, stat, strict=True)), has_hierarchical_limit=False,
                    hierarchical_limit=None, hierarchical_memsw_limit=None)
    snap = MemorySnapshot(limit, usage, ms, None if swap is None else SwapUsage(*swap), swappiness)
    out = render_meminfo(parse_meminfo(text), snap, ViewOptions(disable_swap=disable_swap))
    lines = out.splitlines()
    assert [ln.partition(":")[0] for ln in lines] == [ln.partition(":")[0] for ln in text.splitlines()]
    v = {ln.partition(":")[0]: int(ln.split()[1]) for ln in lines}
    assert all(x >= 0 for x in v.values())
    assert v["MemTotal"] <= host_total
    assert v["MemFree"] <= v["MemTotal"] and v["MemAvailable"] <= v["MemTotal"]
    assert v["SwapFree"] <= v["SwapTotal"] <= host_swap
    if disable_swap:
        assert v["SwapTotal"] == 0


def test_golden_dir_has_no_strays() -> None:
    # every golden this area writes has a fixture host
    for d in GOLDEN.iterdir():
        assert (HOSTS / d.name).is_dir(), d
