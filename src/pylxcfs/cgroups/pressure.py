"""Pressure stall information of a cgroup, by meaning (cgroup-v2.rst "PSI - Pressure Stall Information",
Documentation/accounting/psi.rst "Cgroup2 interface").

PSI exists only in cgroup2: every non-root cgroup2 group has {cpu,memory,io}.pressure (and irq.pressure with
CONFIG_IRQ_TIME_ACCOUNTING, 6.1+) whichever controllers are enabled, because the scheduler tracks stalls per
task against the task's cgroup2 group. So a hybrid host's "unified" mount carries them too, for the group of
the "0::" line, while memory and CPU limits live in v1. cgroup v1 has no pressure files (its memory.pressure_level
is an eventfd notifier, not a reading).

A missing file is None: PSI compiled out or booted with psi=0, the group's cgroup.pressure set to 0 (6.1+ hides
the files), or a v1 directory. Any other read error raises CgroupUnavailable. Units: as parse.pressure.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.hostfs import read_bytes
from pylxcfs.parse.pressure import Pressure, parse_pressure

Reader = Callable[[str], bytes]

RESOURCES = ("cpu", "memory", "io", "irq")


def pressure(cg: CgroupDir, resource: str, read: Reader = read_bytes) -> Pressure | None:
    """The group's `resource` pressure ("cpu", "memory", "io", "irq"); None when it has no such file."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown PSI resource {resource!r}")
    if not cg.v2:
        return None
    path = f"{cg.path}/{resource}.pressure"
    try:
        data = read(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        # EOPNOTSUPP: PSI disabled at run time (psi_show refuses); the caller treats it as "no PSI here".
        if e.errno == errno.EOPNOTSUPP:
            return None
        raise CgroupUnavailable(path, e.strerror or str(e)) from None
    return parse_pressure(data.decode(), path)
