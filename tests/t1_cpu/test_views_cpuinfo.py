"""views/cpuinfo.py: per-architecture renders checked against an independent line-based oracle written here
(and golden files for review), plus produce() over the fixture hosts and the bytes-keyed cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pylxcfs.context import ViewEnv, ViewOptions
from pylxcfs.hostfs import HostRoot
from pylxcfs.parse.cpuinfo import parse_cpuinfo
from pylxcfs.views import cpuinfo
from pylxcfs.views.cpuinfo import compile_cpuinfo, render_cpuinfo

from .conftest import CPU_HOSTS, CPUINFO, X86_CPU, check_golden, env_of, v1_ctx, v2_ctx

FIXED = {"siblings": "1", "core id": "0", "cpu cores": "1"}


def oracle(text: str, shown: list[int]) -> str:
    """The seed's rules applied line by line (x86_64 / arm / ppc64le layouts): keep the blocks of `shown`
    (a block = a "processor : N" line up to and including the next blank line), renumber in order."""
    lines = text.split("\n")
    out: list[str] = []
    cur: int | None = None  # index of the block being kept, or -1 while dropping one, None outside blocks
    order = {cpu: k for k, cpu in enumerate(c for c in shown if f"processor\t: {c}" in lines)}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"processor\t: (\d+)", line)
        if m:
            cur = order.get(int(m.group(1)), -1)
            if cur >= 0:
                out.append(f"processor\t: {cur}")
            continue
        if cur is not None and cur < 0:
            if line == "":
                cur = None
            continue
        key, sep, _ = line.partition(":")
        name = key.rstrip()
        if cur is not None and sep and name in FIXED:
            out.append(f"{key}: {FIXED[name]}")
        elif cur is not None and sep and name == "physical id":
            out.append(f"{key}: {cur}")
        else:
            out.append(line)
        if cur is not None and line == "":
            cur = None
        del i
    return "\n".join(out)


def render(name: str, shown: list[int]) -> str:
    return render_cpuinfo(compile_cpuinfo(parse_cpuinfo(CPUINFO[name].read_text())), shown)


@pytest.mark.parametrize("name", ["x86_64.txt", "arm64.txt", "arm64-compat32.txt", "arm-legacy.txt", "ppc64le.txt"])
@pytest.mark.parametrize("shown", [[0], [1], [0, 1], [1, 0], [3], [1, 3], [0, 1, 2, 3], [9]])
def test_matches_line_oracle(name: str, shown: list[int]) -> None:
    text = CPUINFO[name].read_text()
    assert render(name, shown) == oracle(text, shown)


def test_arm64_all_cpus_is_host_file() -> None:
    # arm64 has no topology lines: showing every CPU in order must reproduce the host file byte for byte
    text = CPUINFO["arm64.txt"].read_text()
    assert render("arm64.txt", [0, 1, 2, 3]) == text


def test_x86_seed_topology_rule() -> None:
    out = render("x86_64.txt", [1])
    assert re.findall(r"^processor\t: (\d+)$", out, re.M) == ["0"]
    assert re.findall(r"^physical id\t: (\d+)$", out, re.M) == ["0"]
    assert re.findall(r"^siblings\t: (\d+)$", out, re.M) == ["1"]
    assert re.findall(r"^core id\t\t: (\d+)$", out, re.M) == ["0"]
    assert re.findall(r"^cpu cores\t: (\d+)$", out, re.M) == ["1"]
    assert "apicid\t\t: 1\n" in out  # the block really is host CPU 1's (apicid is not rewritten)
    check_golden(X86_CPU, "cpuinfo", out)  # its container ct has cpuset 1


def test_ppc64le_trailer_kept_after_blocks() -> None:
    out = render("ppc64le.txt", [2])
    assert out.startswith("processor\t: 0\ncpu\t\t: POWER9") and out.count("processor\t:") == 1
    assert out.endswith("\n\ntimebase\t: 512000000\nplatform\t: pSeries\nmodel\t\t: IBM,9009-22A\n"
                        "machine\t\t: CHRP IBM,9009-22A\nMMU\t\t: Radix\n")
    check_golden("ppc64le-power9", "cpuinfo", out)  # its container ct has cpuset 2


def test_arm_legacy_preamble_and_hardware_kept() -> None:
    out = render("arm-legacy.txt", [1])
    assert out.startswith("Processor\t: ARMv7 Processor rev 5 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 2400.00\n\n")
    assert out.endswith("Hardware\t: sun8i\nRevision\t: 0000\nSerial\t\t: 02c00081d0a1b2c3\n")


def test_s390x_header_and_blocks_renumbered() -> None:
    out = render("s390x.txt", [1, 3])
    lines = out.split("\n")
    assert lines[0] == "vendor_id       : IBM/S390"
    assert lines[1] == "# processors    : 2"
    assert [ln for ln in lines if ln.startswith("processor ")] == [
        "processor 0: version = FF,  identification = 0A18E8,  machine = 8561",
        "processor 1: version = FF,  identification = 0A18E8,  machine = 8561",
    ]
    assert re.findall(r"^cpu number      : (\d+)$", out, re.M) == ["0", "1"]
    assert re.findall(r"^address         : (\d+)$", out, re.M) == ["1", "3"]  # host CPUs 1 and 3's blocks
    assert re.findall(r"^physical id     : (\d+)$", out, re.M) == ["0", "1"]
    assert re.findall(r"^siblings        : (\d+)$", out, re.M) == ["1", "1"]
    assert re.findall(r"^cpu cores       : (\d+)$", out, re.M) == ["1", "1"]
    assert re.findall(r"^core id         : (\d+)$", out, re.M) == ["0", "0"]
    assert any(ln.startswith("facilities") for ln in lines) and any(ln.startswith("cache5") for ln in lines)
    assert "\n\n\n" not in out and out.endswith("cpu MHz static  : 5200\n")
    check_golden("s390x-z15", "cpuinfo", out)  # its container ct has cpuset 1,3


def test_s390x_first_cpu_only_ends_like_kernel() -> None:
    # dropping the last block (which has no trailing blank line) must not leave a dangling blank line
    out = render("s390x.txt", [0])
    assert out.endswith("cpu MHz static  : 5200\n") and not out.endswith("\n\n")
    assert out.count("\ncpu number") == 1


def test_s390x_all_cpus_is_host_file_but_topology() -> None:
    text = CPUINFO["s390x.txt"].read_text()
    out = render("s390x.txt", [0, 1, 2, 3])
    assert out.count("\n") == text.count("\n")
    diff = [(a, b) for a, b in zip(text.split("\n"), out.split("\n"), strict=True) if a != b]
    assert {a.split(":")[0].rstrip() for a, _ in diff} <= {"physical id", "core id", "siblings", "cpu cores"}


def test_s390x_without_blocks() -> None:
    out = render("s390x-noblocks.txt", [1])
    assert "# processors    : 1\n" in out
    assert [ln for ln in out.split("\n") if ln.startswith("processor ")] == [
        "processor 0: version = FF,  identification = 2733E8,  machine = 2964"]


# ------------------------------------------------------------------------------------------ produce()

def test_produce_v1_fixture_host() -> None:
    env = env_of(X86_CPU)
    out = cpuinfo.produce(env, v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="ct"))
    assert out == oracle((CPU_HOSTS / X86_CPU / "proc/cpuinfo").read_text(), [1])
    check_golden(X86_CPU, "cpuinfo", out)


def test_produce_v2_fixture_host_and_cfs() -> None:
    text = (CPU_HOSTS / "arm64-unified/proc/cpuinfo").read_text()
    env = env_of("arm64-unified")
    assert cpuinfo.produce(env, v2_ctx(env.root, "ct")) == oracle(text, [0, 2, 3])
    check_golden("arm64-unified", "cpuinfo", oracle(text, [0, 2, 3]))  # the host's container is in ct
    env = env_of("arm64-unified", enable_cfs=True)  # cpu.max 150000 100000 -> 2 CPUs
    assert cpuinfo.produce(env, v2_ctx(env.root, "ct")) == oracle(text, [0, 2])


def test_produce_cfs_v1_half_cpu() -> None:
    env = env_of(X86_CPU, enable_cfs=True)
    out = cpuinfo.produce(env, v1_ctx(env.root, cpuset="wide", cpu="a/tight", cpuacct="wide"))
    assert out.count("processor\t:") == 1


def test_cache_reparses_when_host_file_changes(tmp_path: Path) -> None:
    dst = tmp_path / "h"
    shutil.copytree(CPU_HOSTS / X86_CPU, dst, symlinks=True)
    env = ViewEnv(root=HostRoot.from_dir(dst), opts=ViewOptions())
    ctx = v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="ct")
    first = cpuinfo.produce(env, ctx)
    assert cpuinfo.produce(env, ctx) is first  # same host bytes, same selection: the cached render
    p = dst / "proc/cpuinfo"
    p.write_text(p.read_text().replace("cpu MHz\t\t: ", "cpu MHz\t\t: 1"))
    second = cpuinfo.produce(env, ctx)
    assert second != first and "cpu MHz\t\t: 1" in second
