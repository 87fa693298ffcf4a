"""remount / umount orchestration: pick the containers, build pure plans, run them in forked workers with bounded
parallelism and a per-container deadline, verify the result from /proc/<pid>/mountinfo, summarise.

The parent never enters a namespace and never touches a FUSE path; workers do (pylxcfs.forkjob).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pylxcfs import forkjob
from pylxcfs.ct import apply
from pylxcfs.ct.plan import OVERLAY_PREFIXES, AttachPlan, attach_plan, detach_plan, lxcfs_mounts_under
from pylxcfs.toolkit.discovery import Candidate, container_mounts

log = logging.getLogger(__name__)


@dataclass
class ContainerResult:
    """status: ok | failed. outcomes: per-target dicts from ct.apply."""

    id: str
    pid: int
    status: str
    error: str = ""
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def has_lxcfs(pid: int) -> bool:
    """The container shows lxcfs overlays (live or stale) on its /proc or /sys, i.e. someone set it up for lxcfs.
    A mount of the lxcfs DIR alone does not count: every namespace copied from the host's (unshare -m, a process
    that never pivoted) shows the daemon's own mount at the same path as a container binding the dir would."""
    return bool(lxcfs_mounts_under(container_mounts(pid), "/", OVERLAY_PREFIXES))


def select_for_all(cands: list[Candidate], include_unconfigured: bool, lxcfs_dir: str | None = None
                   ) -> list[Candidate]:
    """--all acts on containers that our registry or an engine says exist: registered by the hook for this lxcfs
    dir; or named by a runtime state root and showing lxcfs overlays on /proc or /sys; with include_unconfigured,
    every container a state root names. A namespace only the /proc scan found is never selected: any user can make
    one and bind a lxcfs file into it (`unshare -Urmpf`), which says nothing about it being a container."""
    def registered_here(c: Candidate) -> bool:
        return c.registered and (lxcfs_dir is None or not c.lxcfs_dir or c.lxcfs_dir == lxcfs_dir)

    return [c for c in cands if registered_here(c) or (c.engine and (include_unconfigured or has_lxcfs(c.pid)))]


def _same_mntns_as_us(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        return False


def precheck(c: Candidate) -> str | None:
    """Why this container cannot be worked on, or None."""
    if c.pid <= 1:
        return f"bad pid {c.pid}"
    st = apply.proc_start_time(c.pid)
    if st is None:
        return f"pid {c.pid} is gone"
    if c.start_time is not None and st != c.start_time:
        return f"pid {c.pid} was reused (start time changed)"
    if _same_mntns_as_us(c.pid):
        # lxcfs-tools' sanity check (design.md §3.7): never overlay the toolkit's own (host) /proc.
        return f"pid {c.pid} shares our mount namespace (not a container?)"
    return None


def verify_attach(plan: AttachPlan, pid: int, outcomes: list[dict[str, Any]], live_dev: str | None = None
                  ) -> list[str]:
    """After remount: each mounted target has exactly one lxcfs mount, from the live daemon (same st_dev as the
    mount at the lxcfs dir, when known), and none is shared."""
    mounts = container_mounts(pid)
    problems = []
    per_target: dict[str, int] = {}
    for m, rel in lxcfs_mounts_under(mounts, plan.root, OVERLAY_PREFIXES):
        per_target[rel] = per_target.get(rel, 0) + 1
        if m.is_shared:
            problems.append(f"/{rel} is shared ({' '.join(m.optional)})")
        if live_dev is not None and m.dev != live_dev:
            problems.append(f"/{rel} comes from device {m.dev}, not the live daemon's {live_dev}")
    for o in outcomes:
        if o["action"] in ("mounted", "kept"):
            n = per_target.get(o["target"].lstrip("/"), 0)
            if n != 1:
                problems.append(f"{o['target']}: {n} lxcfs mounts after remount")
    return problems


def _run(kind: str, cands: list[Candidate], make_job: Callable[[Candidate], forkjob.Job], parallel: int,
         timeout_s: float, verify: Callable[[Candidate, list[dict[str, Any]]], list[str]] | None
         ) -> list[ContainerResult]:
    results: dict[str, ContainerResult] = {}
    jobs: list[tuple[str, forkjob.Job]] = []
    by_label: dict[str, Candidate] = {}
    for c in cands:
        why = precheck(c)
        if why:
            results[c.id] = ContainerResult(c.id, c.pid, "failed", why)
            continue
        jobs.append((c.id, make_job(c)))
        by_label[c.id] = c
    for r in forkjob.run_jobs(jobs, parallel, timeout_s):
        c = by_label[r.label]
        outcomes = list(r.data.get("outcomes", [])) if r.ok else []
        failed = [f"{o['target']}: {o['detail']}" for o in outcomes if o["action"] == "failed"]
        if r.ok and verify is not None:
            failed += verify(c, outcomes)
        error = r.error if not r.ok else "; ".join(failed)
        results[c.id] = ContainerResult(c.id, c.pid, "ok" if r.ok and not failed else "failed", error, outcomes,
                                        round(r.elapsed_s, 3))
    ordered = [results[c.id] for c in cands]
    for res in ordered:
        kv = {"container": res.id, "pid": res.pid}
        if res.status == "ok":
            n = {a: sum(1 for o in res.outcomes if o["action"] == a) for a in ("mounted", "kept", "removed")}
            log.info(f"{kind} done: {n['mounted']} mounted, {n['kept']} kept, {n['removed']} removed",
                     extra={"kv": kv})
        else:
            log.error(f"{kind} failed: {res.error}", extra={"kv": kv})
    return ordered


def remount(cands: list[Candidate], lxcfs_dir: str, parallel: int, timeout_s: float,
            live_dev: str | None = None) -> list[ContainerResult]:
    plans = {c.id: attach_plan(c.id, lxcfs_dir, "/", c.pid, c.start_time, live_dev=live_dev) for c in cands}

    def job(c: Candidate) -> forkjob.Job:
        p = plans[c.id]
        return lambda: apply.attach(p)

    return _run("remount", cands, job, parallel, timeout_s, lambda c, o: verify_attach(plans[c.id], c.pid, o, live_dev))


def umount(cands: list[Candidate], parallel: int, timeout_s: float) -> list[ContainerResult]:
    def job(c: Candidate) -> forkjob.Job:
        p = detach_plan(c.id, "/", c.pid, c.start_time)
        return lambda: apply.detach(p)

    def verify(c: Candidate, _o: list[dict[str, Any]]) -> list[str]:
        left = lxcfs_mounts_under(container_mounts(c.pid), "/", OVERLAY_PREFIXES)
        return [f"{len(left)} lxcfs mounts left"] if left else []

    return _run("umount", cands, job, parallel, timeout_s, verify)


def summary(kind: str, results: list[ContainerResult]) -> str:
    ok = sum(1 for r in results if r.status == "ok")
    return f"{kind}: {ok} ok, {len(results) - ok} failed, {len(results)} total"
