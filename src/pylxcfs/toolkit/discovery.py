"""Find running containers without depending on any one engine (toolkit.md §6.5, §5.6):
1. the hook's registry (containers that opted in),
2. runc-style state roots (<root>/<id>/state.json: runc, docker, containerd, iSulad-with-runc),
3. crun state roots (<root>/<id>/status),
4. a /proc scan for pid-namespace inits (NSpid ends in 1) as the last resort: it finds namespaces for an explicit
   --container-id pid-N, but a namespace only the scan found is never selected by --all (any unprivileged user can
   make one: `unshare -Urmpf`), see toolkit.ops.select_for_all.
Roots are configurable (--state-root KIND:DIR or PYLXCFS_STATE_ROOTS="runc:/a,crun:/b"; PYLXCFS_PROCSCAN=0), so
tests only ever see their own runc --root. Every id read from disk is validated before use; state files are read
only when they are regular files, bounded in size and time (pylxcfs.toolkit.safefile). Names come from engine
state (docker's config.v2.json, podman's containers storage), never from a process's name or argv.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pylxcfs.ct.apply import proc_start_time
from pylxcfs.ct.oci import valid_container_id
from pylxcfs.errors import QuietError
from pylxcfs.parse.mountinfo import Mount, parse_mountinfo
from pylxcfs.toolkit import registry, safefile

log = logging.getLogger(__name__)

# (kind, glob) of default state roots; a glob may match several roots (containerd namespaces, iSulad runtimes).
DEFAULT_STATE_ROOTS: tuple[tuple[str, str], ...] = (
    ("runc", "/run/runc"),
    ("runc", "/run/docker/runtime-runc/*"),
    ("runc", "/run/containerd/runc/*"),
    ("runc", "/run/isulad/runc/*"),  # iSulad's shim: --root <state>/<runtime>/<id>/<runtime> (not verified)
    ("runc", "/var/run/isulad/*/*/runc"),
    ("crun", "/run/crun"),
    ("crun", "/run/docker/runtime-crun/*"),
    ("crun", "/run/containerd/crun/*"),
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Candidate:
    """A running container as far as discovery can tell. `registered`: the hook set it up for lxcfs. `engine`: a
    runtime's state root names it (runc/crun state written by root)."""

    id: str
    pid: int
    start_time: int | None
    source: str
    rootfs: str | None = None
    name: str | None = None
    registered: bool = False
    aliases: list[str] = field(default_factory=list)
    lxcfs_dir: str | None = None  # the daemon dir the hook registered it for
    engine: bool = False


def parse_roots(spec: str) -> list[tuple[str, str]]:
    """"runc:/a,crun:/b" -> [("runc", "/a"), ("crun", "/b")]; a bare path means runc."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, sep, path = item.partition(":")
        if not sep or kind not in ("runc", "crun"):
            kind, path = "runc", item
        out.append((kind, path))
    return out


def state_roots(flags: list[str] | None) -> list[tuple[str, str]]:
    if flags:
        return [r for f in flags for r in parse_roots(f)]
    env = os.environ.get("PYLXCFS_STATE_ROOTS")
    return parse_roots(env) if env is not None else list(DEFAULT_STATE_ROOTS)


MAX_STATE_BYTES = 16 << 20


def _load_json(path: str) -> Any:
    """A JSON document from a regular file, or None (missing, unsafe, broken: logged at debug, never trusted)."""
    try:
        return safefile.read_json(path, MAX_STATE_BYTES, 5.0)
    except FileNotFoundError:
        return None
    except (OSError, QuietError, UnicodeDecodeError) as exc:
        log.warning(f"ignoring {path}: {exc}")
        return None


def _load_obj(path: str) -> dict[str, object] | None:
    data = _load_json(path)
    return data if isinstance(data, dict) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _alive(pid: int | None, start: int | None) -> bool:
    if not pid or pid <= 1:
        return False
    st = proc_start_time(pid)
    return st is not None and (start is None or st == start)


def scan_root(kind: str, root: str) -> list[Candidate]:
    out: list[Candidate] = []
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return out
    for cid in entries:
        if not valid_container_id(cid):
            continue
        if kind == "runc":
            data = _load_obj(os.path.join(root, cid, "state.json"))
            if data is None:
                continue
            pid, start = _int(data.get("init_process_pid")), _int(data.get("init_process_start"))
            cfg = data.get("config")
            rootfs = cfg.get("rootfs") if isinstance(cfg, dict) else None
        else:
            data = _load_obj(os.path.join(root, cid, "status"))
            if data is None:
                continue
            pid, start = _int(data.get("pid")), _int(data.get("process-start-time"))
            rootfs = data.get("rootfs")
        if pid is not None and _alive(pid, start):
            out.append(Candidate(cid, pid, start, f"{kind}:{root}", rootfs if isinstance(rootfs, str) else None,
                                 engine=True))
    return out


def scan_proc(proc: str = "/proc") -> list[Candidate]:
    """Pid-namespace inits (last NSpid == 1) in another mount namespace than ours."""
    out: list[Candidate] = []
    try:
        my_mnt = os.stat(f"{proc}/self/ns/mnt").st_ino
    except OSError:
        return out
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"{proc}/{pid}/status", encoding="utf-8") as f:
                nspid = next((ln.split()[1:] for ln in f if ln.startswith("NSpid:")), [])
            if len(nspid) < 2 or nspid[-1] != "1" or os.stat(f"{proc}/{pid}/ns/mnt").st_ino == my_mnt:
                continue
            with open(f"{proc}/{pid}/cgroup", encoding="utf-8") as f:
                hexes = _HEX64.findall(f.read())
        except (OSError, StopIteration):
            continue
        cid = hexes[-1] if hexes else f"pid-{pid}"
        out.append(Candidate(cid, pid, proc_start_time(pid), "procscan"))
    return out


def procscan_enabled(flag_disabled: bool) -> bool:
    return not flag_disabled and os.environ.get("PYLXCFS_PROCSCAN", "1") != "0"


def discover(roots: list[tuple[str, str]], registry_dir: str, procscan: bool = True) -> list[Candidate]:
    """Merge every source; the first source naming an id wins, later ones only add registration/aliases.
    A pid seen twice under different ids is kept once (the registry's id first)."""
    by_id: dict[str, Candidate] = {}
    by_pid: dict[int, Candidate] = {}

    def add(c: Candidate) -> None:
        if c.id in by_id:
            by_id[c.id].registered |= c.registered
            by_id[c.id].engine |= c.engine
            by_id[c.id].lxcfs_dir = by_id[c.id].lxcfs_dir or c.lxcfs_dir
            return
        if c.pid in by_pid:
            other = by_pid[c.pid]
            other.registered |= c.registered
            other.engine |= c.engine
            other.aliases.append(c.id)
            return
        by_id[c.id] = c
        by_pid[c.pid] = c

    records = registry.prune(registry_dir, registry.load(registry_dir))
    for rec in records:
        if rec.pid:
            add(Candidate(rec.id, rec.pid, rec.start_time, "registry", rec.rootfs, rec.name, registered=True,
                          lxcfs_dir=rec.lxcfs_dir or None))
    for kind, pattern in roots:
        for root in sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]:
            for c in scan_root(kind, root):
                add(c)
    # Registered ids without a pid (createContainer records) are matched by id to a runtime root.
    for rec in records:
        if not rec.pid and rec.id in by_id:
            by_id[rec.id].registered = True
            by_id[rec.id].lxcfs_dir = rec.lxcfs_dir or None
    if procscan:
        for c in scan_proc():
            if c.pid not in by_pid:
                add(c)
    out = list(by_id.values())
    fill_names(out)
    return out


def podman_names(conf_path: str | None = None) -> dict[str, str]:
    """id -> first name from podman's containers storage (`<graphroot>/<driver>-containers/containers.json`, the
    store named by CONTAINERS_STORAGE_CONF or /etc/containers/storage.conf): engine state written by root, where
    podman keeps the names (they are in no runtime state or annotation)."""
    conf = conf_path or os.environ.get("CONTAINERS_STORAGE_CONF") or "/etc/containers/storage.conf"
    graphroot, driver = "/var/lib/containers/storage", "overlay"
    try:
        data = tomllib.loads(safefile.read_regular(conf, 1 << 20, 2.0).decode("utf-8"))
        storage = data.get("storage")
        if isinstance(storage, dict):
            graphroot = str(storage.get("graphroot") or graphroot)
            driver = str(storage.get("driver") or driver)
    except FileNotFoundError:
        pass
    except (OSError, QuietError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        log.warning(f"ignoring {conf}: {exc}")
        return {}
    if "/" in driver or driver in (".", ".."):
        return {}
    rows = _load_json(os.path.join(graphroot, f"{driver}-containers", "containers.json"))
    out: dict[str, str] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("names"), list):
            names = [n for n in row["names"] if isinstance(n, str) and n]
            if names:
                out[row["id"]] = names[0]
    return out


def docker_name(c: Candidate, data_root: str) -> str | None:
    """docker: <data-root>/containers/<id>/config.v2.json "Name": "/<name>"."""
    data = _load_obj(os.path.join(data_root, "containers", c.id, "config.v2.json"))
    name = data.get("Name") if data else None
    return name.lstrip("/") if isinstance(name, str) and name.strip("/") else None


def fill_names(cands: list[Candidate]) -> None:
    """Best-effort names for --container-id NAME, without asking any engine daemon."""
    docker_root = os.environ.get("PYLXCFS_DOCKER_ROOT", "/var/lib/docker")
    podman = podman_names() if any(c.name is None and c.engine for c in cands) else {}
    for c in cands:
        if c.name is None and c.engine:
            c.name = podman.get(c.id)
        if c.name is None and c.source.startswith("runc:") and "docker" in c.source:
            c.name = docker_name(c, docker_root)


def container_mounts(pid: int) -> list[Mount]:
    """/proc/<pid>/mountinfo (paths relative to the container's root); [] when it vanished."""
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return parse_mountinfo(f.read(), f"/proc/{pid}/mountinfo")
    except OSError:
        return []
