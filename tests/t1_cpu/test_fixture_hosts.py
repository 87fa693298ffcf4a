"""The CPU views through pylxcfs.service.Renderer and core's resolver over core's captured fixture host
(tests/fixtures/hosts/x86_64-hybrid-debian12: a live capture of a pid-ns init in v1 cgroups lxc/ct).
Caller 4243 resolves to init 4242. Expected values are derived by hand from the captured files below."""

from __future__ import annotations

from pylxcfs.context import ViewOptions
from pylxcfs.hostfs import HostRoot
from pylxcfs.service import Renderer

from .conftest import HOSTS
from .test_views_cpuinfo import oracle

HOST = HOSTS / "x86_64-hybrid-debian12"


def renderer(enable_cfs: bool = False) -> Renderer:
    return Renderer(HostRoot.from_dir(HOST), ViewOptions(enable_cfs=enable_cfs))


def test_stat_hand_derived() -> None:
    # cpuset lxc/ct 0-1. cpuacct.usage_all: cpu0 user 0, system 191989184 ns -> 0 / 19 ticks;
    # cpu1 user 12000000 -> 1, system 176000000 -> 17.
    # host cpu0 "11819 0 2831 365312 63 0 43 11 0 0": non-idle 14767 -> idle 365312 + 14767 - 19 = 380060
    # host cpu1 "14746 0 3872 361219 300 0 56 10 0 0": non-idle 18984 -> idle 361219 + 18984 - 18 = 380185
    # btime: the host's line, unchanged (1795925148)
    r = renderer()
    out = r.render("proc/stat", 4243).decode()
    lines = out.splitlines()
    assert lines[:3] == ["cpu  1 0 36 760245 0 0 0 0 0 0", "cpu0 0 0 19 380060 0 0 0 0 0 0",
                         "cpu1 1 0 17 380185 0 0 0 0 0 0"]
    host = (HOST / "proc" / "stat").read_text().splitlines()
    rest = [ln for ln in host if not ln.startswith("cpu")]
    assert "btime 1795925148" in rest and lines[3:] == rest
    assert not r.fallbacks


def test_cpuinfo_and_online() -> None:
    r = renderer()
    text = (HOST / "proc" / "cpuinfo").read_text()
    assert r.render("proc/cpuinfo", 4243).decode() == oracle(text, [0, 1])
    assert r.render("sys/devices/system/cpu/online", 4243) == b"0-1\n"
    assert not r.fallbacks


def test_host_caller_gets_host_files() -> None:
    r = renderer()
    for path in ("proc/cpuinfo", "proc/stat", "sys/devices/system/cpu/online"):
        assert r.render(path, 100) == r.host_bytes(path)
