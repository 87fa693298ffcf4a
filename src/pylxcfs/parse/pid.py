"""Parsers for /proc/<pid>/status, /proc/<pid>/stat and /proc/<pid>/cgroup.

Pure: text in, values out; raises ParseError on malformed text. Only the fields the resolver and the
loadavg sampler need are extracted (speed: these run on every open()).
"""

from __future__ import annotations

from dataclasses import dataclass

from pylxcfs.errors import ParseError


@dataclass(frozen=True, slots=True)
class PidStatus:
    """The two /proc/<pid>/status fields resolution needs."""

    ppid: int  # PPid: parent as seen from the procfs's pid namespace (0 if the parent is not visible)
    nspid: tuple[int, ...]  # NSpid: this task's pid in each nested pid ns, outermost (procfs's) first


def parse_status(text: str, source: str = "status") -> PidStatus:
    """PPid and NSpid of a /proc/<pid>/status text (NSpid exists since Linux 4.1)."""
    ppid: int | None = None
    nspid: tuple[int, ...] | None = None
    for line in text.splitlines():
        if line.startswith("PPid:"):
            try:
                ppid = int(line[5:])
            except ValueError:
                raise ParseError(source, "bad PPid", line=line) from None
        elif line.startswith("NSpid:"):
            try:
                nspid = tuple(int(x) for x in line[6:].split())
            except ValueError:
                raise ParseError(source, "bad NSpid", line=line) from None
            break  # NSpid comes after PPid in every kernel since 4.1
    if ppid is None or not nspid:
        raise ParseError(source, "no PPid/NSpid line (kernel older than 4.1?)")
    return PidStatus(ppid, nspid)


def _after_comm(text: str, source: str) -> list[str]:
    # comm (field 2) may contain spaces and ')' itself: the last ')' ends it (proc(5)).
    end = text.rfind(")")
    if end < 0:
        raise ParseError(source, "no ')' after comm", line=text[:80])
    return text[end + 2 :].split()


def parse_stat_starttime(text: str, source: str = "stat") -> int:
    """Field 22 (starttime) of /proc/<pid>/stat: clock ticks after boot when the process started."""
    fields = _after_comm(text, source)
    try:
        return int(fields[19])  # fields[0] is field 3 (state), so field 22 is index 19
    except (IndexError, ValueError):
        raise ParseError(source, "no starttime (field 22)", line=text[:120]) from None


def parse_stat_state(text: str, source: str = "stat") -> str:
    """Field 3 (state letter: R, S, D, ...) of /proc/<pid>/stat."""
    end = text.rfind(")")
    if end < 0 or end + 2 >= len(text):
        raise ParseError(source, "no state after comm", line=text[:80])
    return text[end + 2]


@dataclass(frozen=True, slots=True)
class CgroupLine:
    """One line of /proc/<pid>/cgroup: "hierarchy-ID:controller-list:path" (cgroups(7))."""

    hierarchy_id: int  # 0 for the cgroup v2 unified hierarchy
    controllers: tuple[str, ...]  # empty for v2; "name=systemd" style names kept verbatim
    path: str  # relative to the reader's cgroup namespace root, starts with "/"


def parse_cgroup(text: str, source: str = "cgroup") -> tuple[CgroupLine, ...]:
    """All lines of /proc/<pid>/cgroup."""
    out: list[CgroupLine] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        hid, sep1, rest = line.partition(":")
        ctrls, sep2, path = rest.partition(":")
        if not sep1 or not sep2:
            raise ParseError(source, "expected id:controllers:path", lineno, line)
        try:
            hier = int(hid)
        except ValueError:
            raise ParseError(source, "bad hierarchy id", lineno, line) from None
        out.append(CgroupLine(hier, tuple(ctrls.split(",")) if ctrls else (), path))
    return tuple(out)
