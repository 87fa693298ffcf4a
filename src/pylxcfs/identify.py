"""Name a served container for `pylxcfs status` and the metrics: (init pid, start time, cgroup) -> id, name, engine.

Sources, first match wins, none of them asks an engine daemon:
1. the hook's registry (/run/pylxcfs/containers/<id>.json, toolkit/registry.py): id and name, matched by the
   init's pid and start time (its engine comes from 2. or 3. when they name the same id);
2. runc-style state roots (toolkit/discovery.py: runc, Docker, containerd, iSulad, crun), matched the same way;
   the root tells the engine;
3. cgroup path conventions: `docker-<id>.scope` / `docker/<id>` (Docker), `libpod-<id>.scope` (podman),
   `crio-<id>.scope` (CRI-O), `cri-containerd-<id>.scope` (containerd CRI), `lxc.payload.<name>` (LXC),
   `isulad/<id>` (iSulad); otherwise the cgroup's last component.
The container id used as the `container` label is the engine's id where one was found.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from pylxcfs.toolkit import discovery, registry

_HEX = r"[0-9a-f]{12,64}"
_CGROUP_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"(?:^|/)docker-({_HEX})\.scope$"), "docker"),
    (re.compile(rf"(?:^|/)docker/({_HEX})$"), "docker"),
    (re.compile(rf"(?:^|/)libpod-({_HEX})\.scope(?:/container)?$"), "podman"),
    (re.compile(rf"(?:^|/)libpod_parent/libpod-({_HEX})$"), "podman"),
    (re.compile(rf"(?:^|/)crio-({_HEX})\.scope$"), "cri-o"),
    (re.compile(rf"(?:^|/)cri-containerd-({_HEX})\.scope$"), "containerd"),
    (re.compile(rf"(?:^|/)isulad/({_HEX})$"), "isulad"),
    (re.compile(r"(?:^|/)lxc\.payload\.([^/]+)$"), "lxc"),
    (re.compile(rf"(?:^|/)kubepods[^/]*/(?:[^/]+/)*?({_HEX})$"), "kubernetes"),
)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a container is, as far as the host's files tell."""

    id: str
    name: str | None
    engine: str  # docker, podman, cri-o, containerd, isulad, lxc, runc, crun, oci-hook, unknown
    source: str  # registry, state-root, cgroup, none


def engine_of_root(kind: str, root: str) -> str:
    """The engine behind a runc/crun state root (by the defaults' paths)."""
    if "/docker/" in root:
        return "docker"
    if "/containerd/" in root:
        return "containerd"
    if "isulad" in root:
        return "isulad"
    return kind


def from_cgroup(cgroup: str) -> tuple[str, str] | None:
    """(id, engine) from a cgroup directory's conventional name, or None."""
    path = cgroup.rstrip("/")
    for rx, engine in _CGROUP_RULES:
        m = rx.search(path)
        if m:
            return m.group(1), engine
    return None


class Identifier:
    """Looks containers up against the registry and state roots read once (build one per status/scrape)."""

    def __init__(self, registry_dir: str | None = None, roots: list[tuple[str, str]] | None = None) -> None:
        self.by_pid: dict[int, tuple[int | None, Identity]] = {}
        for rec in registry.load(registry.registry_dir(registry_dir)):
            if rec.pid:
                self.by_pid.setdefault(rec.pid, (rec.start_time, Identity(rec.id, rec.name, "oci-hook",
                                                                           "registry")))
        for kind, pattern in roots if roots is not None else discovery.state_roots(None):
            matches = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
            for root in matches:
                if not os.path.isdir(root):
                    continue
                for c in discovery.scan_root(kind, root):
                    seen = self.by_pid.get(c.pid)
                    if seen is not None:
                        # A hook's record says who, not which engine; the engine's own state for the same id
                        # and start (lxcfs-runc under containerd's CRI, a hooked Docker container) says which.
                        ident = seen[1]
                        if ident.engine == "oci-hook" and ident.id == c.id and seen[0] in (None, c.start_time):
                            self.by_pid[c.pid] = (seen[0], Identity(ident.id, ident.name,
                                                                    engine_of_root(kind, root), ident.source))
                        continue
                    self.by_pid[c.pid] = (c.start_time, Identity(c.id, None, engine_of_root(kind, root),
                                                                 "state-root"))

    def identify(self, init_pid: int, start_ticks: int | None, cgroup: str) -> Identity:
        """The best identity for a container init."""
        hit = self.by_pid.get(init_pid)
        conv = from_cgroup(cgroup) if cgroup else None
        if hit is not None and (hit[0] is None or start_ticks is None or hit[0] == start_ticks):
            ident = hit[1]
            if ident.engine == "oci-hook" and conv is not None and conv[0] == ident.id:
                return Identity(ident.id, ident.name, conv[1], ident.source)
            return ident
        if conv is not None:
            return Identity(conv[0], None, conv[1], "cgroup")
        last = os.path.basename(cgroup.rstrip("/")) if cgroup else ""
        return Identity(last or f"pid-{init_pid}", None, "unknown", "none")
