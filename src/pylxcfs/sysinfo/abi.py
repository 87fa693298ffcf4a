"""The ABI side of an intercepted sysinfo(2): which (architecture, syscall number) pairs we answer and the exact
bytes of `struct sysinfo` (include/uapi/linux/sysinfo.h) we write into the caller. Pure: no I/O.

Only LP64 ABIs whose struct is the 112-byte layout of syscalls.Sysinfo are answered; a 32-bit caller (i386
`int 0x80`, arm32 compat) or x32 arrives with another audit arch or syscall number and gets CONTINUE: the kernel
runs its own sysinfo, so such a caller sees the host's figures, never garbage.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from pylxcfs.syscalls import Sysinfo

# (AUDIT_ARCH_*, __NR_sysinfo) we answer. include/uapi/linux/audit.h; arch/x86/entry/syscalls/syscall_64.tbl (99);
# include/uapi/asm-generic/unistd.h (179, arm64).
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
ANSWERED = {(AUDIT_ARCH_X86_64, 99), (AUDIT_ARCH_AARCH64, 179)}
SIZE = ctypes.sizeof(Sysinfo)
SI_LOAD_SHIFT = 16  # sysinfo.loads fixed point; /proc/loadavg's avenrun uses FSHIFT 11
_ULONG_MAX = (1 << 64) - 1
_USHORT_MAX = 0xFFFF


@dataclass(frozen=True, slots=True)
class SysinfoValues:
    """What a container's sysinfo says, in bytes and seconds (before the mem_unit scaling)."""

    uptime_s: int
    loads: tuple[int, int, int]  # SI_LOAD_SHIFT fixed point
    totalram: int
    freeram: int
    sharedram: int
    bufferram: int
    totalswap: int
    freeswap: int
    procs: int


def answerable(arch: int, nr: int) -> bool:
    """True if a notification for (arch, nr) is a sysinfo call whose struct we know."""
    return (arch, nr) in ANSWERED


def pack(v: SysinfoValues) -> bytes:
    """The struct sysinfo bytes. mem_unit as kernel/sys.c do_sysinfo sets it: 1 with byte counts when
    totalram + totalswap fits an unsigned long (always, on 64-bit, for real memory sizes), else the page size
    with page counts. procs saturates at 65535 (an unsigned short; the kernel truncates)."""
    si = Sysinfo()
    si.uptime = max(0, v.uptime_s)
    for i, x in enumerate(v.loads):
        si.loads[i] = max(0, min(x, _ULONG_MAX))
    mem = (v.totalram, v.freeram, v.sharedram, v.bufferram, v.totalswap, v.freeswap)
    unit = 1
    if v.totalram + v.totalswap > _ULONG_MAX:
        unit = 4096
    scaled = [max(0, x) // unit for x in mem]
    si.totalram, si.freeram, si.sharedram, si.bufferram, si.totalswap, si.freeswap = scaled
    si.procs = max(0, min(v.procs, _USHORT_MAX))
    si.totalhigh = 0
    si.freehigh = 0
    si.mem_unit = unit
    return bytes(si)


def unpack(data: bytes) -> Sysinfo:
    """The struct from bytes (tests, the probe's independent check)."""
    return Sysinfo.from_buffer_copy(data[:SIZE])
