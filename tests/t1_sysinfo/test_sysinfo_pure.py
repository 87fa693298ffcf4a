"""The pure parts of the sysinfo feature: struct sysinfo bytes, the maps check, the seccomp merge, the figures
computed from a fixture host tree."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

from pylxcfs.context import ViewOptions
from pylxcfs.syscalls import Sysinfo
from pylxcfs.sysinfo import abi, client, seccomp_merge
from pylxcfs.sysinfo.agent import parse_maps_writable

GIB = 1 << 30


def _values(**kw: int) -> abi.SysinfoValues:
    base = dict(uptime_s=5, loads=(1 << 16, 2 << 16, 3 << 16), totalram=GIB, freeram=GIB // 2, sharedram=4096,
                bufferram=0, totalswap=0, freeswap=0, procs=3)
    base.update(kw)
    return abi.SysinfoValues(**base)  # type: ignore[arg-type]


def test_struct_layout_is_the_lp64_abi() -> None:
    # include/uapi/linux/sysinfo.h on LP64: 8 longs, procs at 80, totalhigh 88, freehigh 96, mem_unit 104.
    assert ctypes.sizeof(Sysinfo) == 112 == abi.SIZE
    data = abi.pack(_values())
    up, l1, l2, l3, tot, free, shared, buf, tsw, fsw = struct.unpack_from("<q9Q", data, 0)
    assert (up, l1, l2, l3) == (5, 65536, 131072, 196608)
    assert (tot, free, shared, buf, tsw, fsw) == (GIB, GIB // 2, 4096, 0, 0, 0)
    assert struct.unpack_from("<H", data, 80)[0] == 3
    assert struct.unpack_from("<QQI", data, 88) == (0, 0, 1)


def test_procs_saturate_and_negative_clamps() -> None:
    si = abi.unpack(abi.pack(_values(procs=70000, uptime_s=-3, freeram=-1)))
    assert si.procs == 0xFFFF and si.uptime == 0 and si.freeram == 0


def test_answerable_only_lp64_sysinfo() -> None:
    assert abi.answerable(abi.AUDIT_ARCH_X86_64, 99)
    assert abi.answerable(abi.AUDIT_ARCH_AARCH64, 179)
    assert not abi.answerable(0x40000003, 116)  # i386 int 0x80 sysinfo: another struct
    assert not abi.answerable(abi.AUDIT_ARCH_X86_64, 99 | 0x40000000)  # x32


MAPS = """\
7f0000000000-7f0000001000 r--p 00000000 00:00 0
7f0000001000-7f0000002000 rw-p 00000000 00:00 0
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
7f0000004000-7f0000005000 rw-p 00000000 00:00 0
"""


def test_maps_writable() -> None:
    assert parse_maps_writable(MAPS, 0x7F0000001000, 112)
    assert parse_maps_writable(MAPS, 0x7F0000001FC0, 112)  # spans two adjacent writable mappings
    assert not parse_maps_writable(MAPS, 0x7F0000000F90, 112)  # starts read-only
    assert not parse_maps_writable(MAPS, 0x7F0000002FC0, 112)  # runs into the hole
    assert not parse_maps_writable(MAPS, 0x10, 112)
    assert not parse_maps_writable("", 0x7F0000001000, 112)


SOCK = "/var/lib/lxc/lxcfs.sysinfo.sock"


def test_merge_without_profile_adds_an_allowing_one() -> None:
    out, what = seccomp_merge.merge({"linux": {}}, SOCK, "x86_64")
    sec = out["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ALLOW" and sec["listenerPath"] == SOCK
    assert sec["syscalls"] == [{"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}]
    assert sec["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert "added" in what


def test_merge_docker_like_profile_keeps_everything_else() -> None:
    prof = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read", "sysinfo", "write"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["sysinfo"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    cfg = {"linux": {"seccomp": prof}}
    out, _ = seccomp_merge.merge(cfg, SOCK)
    sec = out["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO" and sec["defaultErrnoRet"] == 1
    assert sec["architectures"] == ["SCMP_ARCH_X86_64"]
    assert sec["syscalls"] == [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                               {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                               {"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}]
    assert cfg["linux"]["seccomp"]["syscalls"][0]["names"] == ["read", "sysinfo", "write"]  # input untouched


def test_merge_leaves_profiles_that_decide_sysinfo() -> None:
    cases = [
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO"}]},
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1,
                                                                                   "op": "SCMP_CMP_EQ"}]}]},
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
        {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/other.sock",
         "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]},
    ]
    for prof in cases:
        cfg = {"linux": {"seccomp": prof}}
        out, what = seccomp_merge.merge(cfg, SOCK)
        assert out is cfg and what.startswith("unchanged"), (prof, what)


def test_socket_for() -> None:
    assert client.socket_for("/var/lib/lxc/lxcfs/") == SOCK
    try:
        client.socket_for("/" + "x" * 120)
    except ValueError as e:
        assert "longer" in str(e)
    else:
        raise AssertionError("a too long socket path was accepted")


def test_values_from_fixture_tree() -> None:
    from pylxcfs.hostfs import HostRoot
    from pylxcfs.procs.resolve import Resolver
    from pylxcfs.service import Renderer
    from pylxcfs.sysinfo.values import compute

    top = Path(__file__).resolve().parents[1] / "fixtures" / "hosts" / "x86_64-hybrid-debian12"
    root = HostRoot.from_dir(top)
    r = Renderer(root, ViewOptions(), Resolver(root))
    ctx = r.context(4243)
    v = compute(r.env, ctx)
    meminfo = r.render("proc/meminfo", 4243).decode()
    kib = {ln.split(":")[0]: int(ln.split()[1]) for ln in meminfo.splitlines() if ln.endswith(" kB")}
    assert v.totalram == kib["MemTotal"] * 1024 and v.freeram == kib["MemFree"] * 1024
    assert v.totalswap == kib["SwapTotal"] * 1024 and v.freeswap == kib["SwapFree"] * 1024
    assert v.sharedram == kib["Shmem"] * 1024
    up = float(r.render("proc/uptime", 4243).decode().split()[0])
    assert up <= v.uptime_s < up + 1
    loads = (top / "proc" / "loadavg").read_text().split()[:3]
    assert [round(x / 65536, 2) for x in v.loads] == [float(x) for x in loads]


def test_host_loads_are_the_kernels_to_the_file_precision() -> None:
    # Without -l the container's sysinfo loads are the host's /proc/loadavg figures; on the live host they stay
    # within the file's rounding (1/100) of the kernel's own sysinfo(2) loads (retried: avenrun moves every 5 s).
    from pylxcfs import syscalls
    from pylxcfs.context import ViewEnv
    from pylxcfs.hostfs import HostRoot
    from pylxcfs.sysinfo.values import host_loads

    env = ViewEnv(root=HostRoot(), opts=ViewOptions())
    for _ in range(5):
        ours = host_loads(env)
        kernel = [int(x) for x in syscalls.sysinfo().loads]
        if all(abs(a - b) <= 0.006 * 65536 for a, b in zip(ours, kernel, strict=True)):
            return
    raise AssertionError(f"host_loads {ours} vs sysinfo(2) {kernel}")
