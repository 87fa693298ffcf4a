"""`pylxcfs status [--json] [MOUNTPOINT]`: the daemon's health and the containers it serves, without asking it.

Everything comes from files the daemon publishes (statusdir.py: a supervisor snapshot and one per worker,
about once a second), /proc (process states, each container init's mountinfo) and one read probe of the mount
in a forked child killed at its deadline (toolkit/probe.py). This process never touches the FUSE mount
itself, so a stopped (SIGSTOP) or wedged daemon makes status say so instead of hanging:
  serving      the probe read a file and the snapshots are fresh
  hung         the probe got no answer in time, a snapshot stopped moving while its process lives, or the
               supervisor or a worker is in the stopped state (SIGSTOP, a debugger): "hung_reason" says which
  dead         the mount is there but the daemon is gone (reads fail with ENOTCONN)
  not-running  nothing is mounted and no daemon runs
Exit codes: 0 serving, 1 not running, 4 hung, 5 dead (the same numbers as `check-lxcfs`).

The container table merges the workers' per-container counters (workers that exited keep their last
snapshot, so totals survive a reload or a crash, up to the last second's requests of a crashed one), drops
containers whose init is gone, and names each one with identify.py. "files" says, for every file the
daemon serves, whether the container's own mount table has it covered by this daemon's mount (ok), by an
lxcfs mount of another (dead or earlier) daemon (stale), or not at all (missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from pylxcfs import __version__
from pylxcfs.errors import ParseError
from pylxcfs.fuse.mountpoint import canonical
from pylxcfs.identify import Identifier
from pylxcfs.parse.mountinfo import Mount, parse_mountinfo, top_mount_at
from pylxcfs.parse.pid import parse_stat_starttime, parse_stat_state
from pylxcfs.stats import BUCKETS_S, quantile
from pylxcfs.statusdir import PUBLISH_INTERVAL_S, read_all, status_dir_for
from pylxcfs.toolkit.probe import Health, daemon_mount, probe
from pylxcfs.views.registry import VIEW_PATHS

DEFAULT_MOUNTPOINT = "/var/lib/lxc/lxcfs"
DEFAULT_PIDFILE = "/run/pylxcfs.pid"
STALE_AFTER_S = 4 * PUBLISH_INTERVAL_S  # a snapshot older than this, of a live process, means that process is stuck
EXIT = {"serving": 0, "not-running": 1, "hung": 4, "dead": 5}
_STATE_NAMES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
                "Z": "zombie", "X": "dead", "I": "idle"}


def _read(path: str, cap: int = 1 << 20) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(cap).decode("utf-8", "replace")
    except OSError:
        return None


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat, or None when the pid is gone (a zombie counts as gone)."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        st = parse_stat_state(text)
    except ParseError:
        return None
    return None if st in ("Z", "X") else st


def init_alive(pid: int, start_ticks: int) -> bool:
    """The container init still runs (same start time: the pid was not reused)."""
    text = _read(f"/proc/{pid}/stat")
    try:
        return text is not None and parse_stat_starttime(text) == start_ticks
    except ParseError:
        return False


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process."""
    text = _read(f"/proc/{pid}/status")
    for line in (text or "").splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def pidfile_pid(pidfile: str) -> int | None:
    """The pid recorded in the pidfile (no lock is taken: reading never disturbs the daemon)."""
    text = (_read(pidfile, 64) or "").strip()
    return int(text) if text.isdigit() else None


def _add_counts(dst: dict[str, int], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, int):
            dst[k] = dst.get(k, 0) + v


def merge_containers(workers: dict[int, dict[str, Any]],
                     alive: Any = init_alive) -> dict[tuple[int, int], dict[str, Any]]:
    """Per-container totals over every worker snapshot, containers whose init is gone left out."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for snap in workers.values():
        for c in snap.get("containers") or []:
            try:
                key = (int(c["init_pid"]), int(c["start_ticks"]))
            except (KeyError, TypeError, ValueError):
                continue
            m = out.get(key)
            if m is None:
                m = out[key] = {"init_pid": key[0], "start_ticks": key[1], "cgroup": str(c.get("cgroup") or ""),
                                "first_seen": c.get("first_seen"), "last_seen": c.get("last_seen"),
                                "files": {}, "fallbacks": {}, "last_error": None}
            else:
                m["first_seen"] = min(x for x in (m["first_seen"], c.get("first_seen")) if x is not None)
                m["last_seen"] = max(x for x in (m["last_seen"], c.get("last_seen")) if x is not None)
            for path, f in (c.get("files") or {}).items():
                mf = m["files"].setdefault(path, {"requests": 0, "sum_ns": 0, "buckets": [0] * (len(BUCKETS_S) + 1)})
                mf["requests"] += int(f.get("requests", 0))
                mf["sum_ns"] += int(f.get("sum_ns", 0))
                for i, n in enumerate((f.get("buckets") or [])[:len(mf["buckets"])]):
                    mf["buckets"][i] += int(n)
            for path, reasons in (c.get("fallbacks") or {}).items():
                _add_counts(m["fallbacks"].setdefault(path, {}), reasons)
            err = c.get("last_error")
            prev = m["last_error"]
            if isinstance(err, dict) and (prev is None or err.get("time", 0) > prev.get("time", 0)):
                m["last_error"] = err
    return {k: v for k, v in out.items() if alive(*k)}


def container_files(init_pid: int, daemon_dev: str | None) -> dict[str, str]:
    """Per served file: ok (this daemon's mount covers it in the container), stale (another lxcfs mount:
    a dead or earlier daemon's) or missing. From /proc/<pid>/mountinfo, which never touches FUSE."""
    text = _read(f"/proc/{init_pid}/mountinfo", 16 << 20)
    if text is None:
        return {}
    try:
        mounts = parse_mountinfo(text, f"/proc/{init_pid}/mountinfo")
    except ParseError:
        return {}
    out = {}
    for view in VIEW_PATHS:
        top = top_mount_at(mounts, "/" + view)
        if top is None or not top.is_lxcfs:
            out[view] = "missing"
        elif daemon_dev is not None and top.dev == daemon_dev:
            out[view] = "ok"
        else:
            out[view] = "stale"
    return out


def _container_row(m: dict[str, Any], ident: Any, daemon_dev: str | None) -> dict[str, Any]:
    total = [0] * (len(BUCKETS_S) + 1)
    requests = 0
    per_file = {}
    for path, f in sorted(m["files"].items()):
        requests += f["requests"]
        for i, n in enumerate(f["buckets"]):
            total[i] += n
        per_file[path] = {"requests": f["requests"], "p50_s": quantile(f["buckets"], 0.5),
                          "p99_s": quantile(f["buckets"], 0.99),
                          "mean_s": f["sum_ns"] / f["requests"] / 1e9 if f["requests"] else None}
    fallbacks: dict[str, int] = {}
    for reasons in m["fallbacks"].values():
        _add_counts(fallbacks, reasons)
    files = container_files(m["init_pid"], daemon_dev)
    return {"id": ident.id, "name": ident.name, "engine": ident.engine, "id_source": ident.source,
            "init_pid": m["init_pid"], "cgroup": m["cgroup"], "requests": requests,
            "fallbacks": fallbacks, "fallbacks_by_file": m["fallbacks"],
            "p50_s": quantile(total, 0.5), "p99_s": quantile(total, 0.99), "files_by_name": per_file,
            "mounted": files, "mounted_summary": {s: sum(1 for v in files.values() if v == s)
                                                  for s in ("ok", "stale", "missing")},
            "last_error": m["last_error"], "first_seen": m["first_seen"], "last_seen": m["last_seen"]}


def _process(pid: int, snap: dict[str, Any] | None, now: float, role: str) -> dict[str, Any]:
    st = proc_state(pid)
    age = now - snap["_mtime"] if snap is not None and "_mtime" in snap else None
    return {"pid": pid, "role": role, "alive": st is not None, "state": _STATE_NAMES.get(st or "", st),
            "snapshot_age_s": round(age, 3) if age is not None else None,
            "stale": bool(st is not None and age is not None and age > STALE_AFTER_S),
            "rss_bytes": rss_bytes(pid) if st is not None else None}


def collect(mountpoint: str = DEFAULT_MOUNTPOINT, pidfile: str = DEFAULT_PIDFILE, registry_dir: str | None = None,
            probe_timeout_s: float = 2.0, status_dir: str | None = None) -> dict[str, Any]:
    """Everything `status` reports, as a JSON-able dict."""
    now = time.time()
    mnt = canonical(mountpoint)
    sdir = status_dir or status_dir_for(pidfile)
    sup_snap, worker_snaps = read_all(sdir)
    mount: Mount | None = daemon_mount(mnt)
    pr = probe(mnt, probe_timeout_s)
    sup_pid = pidfile_pid(pidfile) or (sup_snap or {}).get("pid")
    supervisor = _process(int(sup_pid), sup_snap, now, "supervisor") if sup_pid else None
    listed = {w.get("pid") for w in (sup_snap or {}).get("workers") or []}
    workers = []
    for pid, snap in sorted(worker_snaps.items()):
        p = _process(pid, snap, now, "worker")
        if not p["alive"]:
            continue
        p["listed_by_supervisor"] = pid in listed
        p["open_handles"] = (snap.get("gauges") or {}).get("open_handles")
        p["version"] = snap.get("version")
        workers.append(p)
    for pid in sorted(x for x in listed if isinstance(x, int) and x not in worker_snaps):
        p = _process(pid, None, now, "worker")
        if p["alive"]:
            p["listed_by_supervisor"] = True
            workers.append(p)  # started, not yet publishing
    procs = ([supervisor] if supervisor else []) + workers
    alive_procs = [p for p in procs if p["alive"]]
    stopped = [f"{p['role']} {p['pid']}" for p in alive_procs if p["state"] in ("stopped", "tracing-stop")]
    stale = [f"{p['role']} {p['pid']}" for p in alive_procs if p["stale"]]
    hung_reason = None
    if stopped:
        health, hung_reason = "hung", "stopped: " + ", ".join(stopped)
    elif pr.health == Health.HUNG:
        health, hung_reason = "hung", "the mount did not answer the probe"
    elif stale:
        health, hung_reason = "hung", "snapshot not updated: " + ", ".join(stale)
    elif pr.health == Health.SERVING:
        health = "serving"
    elif pr.health == Health.DEAD:
        health = "dead"
    elif alive_procs:
        health, hung_reason = "hung", "the daemon runs but nothing is mounted"
    else:
        health = "not-running"
    ident = Identifier(registry_dir)
    daemon_dev = mount.dev if mount is not None else None
    rows = [_container_row(m, ident.identify(m["init_pid"], m["start_ticks"], m["cgroup"]), daemon_dev)
            for m in merge_containers(worker_snaps).values()]
    rows.sort(key=lambda r: (-r["requests"], r["id"]))
    host_requests = sum(int(s.get("host_requests", 0)) for s in worker_snaps.values())
    unresolved: dict[str, int] = {}
    for s in worker_snaps.values():
        for reasons in (s.get("unresolved_fallbacks") or {}).values():
            _add_counts(unresolved, reasons)
    any_worker = next((s for _, s in sorted(worker_snaps.items(), reverse=True)), {})
    return {
        "health": health, "hung_reason": hung_reason, "exit_code": EXIT[health],
        "probe": {"result": pr.health.name.lower(), "detail": pr.detail, "elapsed_s": round(pr.elapsed_s, 3)},
        "mountpoint": {"path": mnt, "mounted": mount is not None, "fstype": mount.fstype if mount else None,
                       "dev": daemon_dev},
        "status_dir": sdir, "status_version": __version__,
        "version": (sup_snap or {}).get("version") or any_worker.get("version"),
        "backend": (sup_snap or {}).get("backend") or ("mfusepy" if worker_snaps and not sup_snap else None),
        "uptime_s": round(now - sup_snap["started"], 1) if sup_snap and supervisor and supervisor["alive"] else None,
        "kernel": {"release": os.uname().release, "fuse": (sup_snap or {}).get("fuse"),
                   "cgroup_layout": any_worker.get("cgroup_layout")},
        "options": any_worker.get("options"),
        "supervisor": supervisor, "workers": workers,
        "worker_crashes": (sup_snap or {}).get("worker_crashes"),
        "stuck_requests": (sup_snap or {}).get("stuck_requests"),
        "host_requests": host_requests, "unresolved_fallbacks": unresolved,
        "containers": rows,
    }


def _ms(s: float | None) -> str:
    return "-" if s is None else (f"{s * 1e3:.3g}ms" if s < 1 else f"{s:.3g}s")


def render_text(st: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = []
    mp = st["mountpoint"]
    lines.append(f"pylxcfs {st['version'] or '?'} ({st['backend'] or 'backend ?'}): {st['health'].upper()}"
                 f"  [{st['hung_reason'] or st['probe']['detail']}]")
    up = st["uptime_s"]
    lines.append(f"mount point {mp['path']}: {mp['fstype'] + ' dev ' + mp['dev'] if mp['mounted'] else 'not mounted'}"
                 + (f", up {up:.0f}s" if up is not None else ""))
    k = st["kernel"]
    fuse = k.get("fuse") or {}
    feats = [f"kernel {k['release']}"]
    if fuse:
        feats.append(f"FUSE {fuse.get('protocol')}")
        feats.append("resend " + ("yes" if fuse.get("resend") and fuse.get("resend_ok") else "no"))
    if k.get("cgroup_layout"):
        feats.append(f"cgroups {k['cgroup_layout']}")
    opts = [n for n, v in (st.get("options") or {}).items() if v]
    if opts:
        feats.append("options " + ",".join(opts))
    lines.append("features: " + ", ".join(feats))
    for p in ([st["supervisor"]] if st["supervisor"] else []) + st["workers"]:
        age = p["snapshot_age_s"]
        lines.append(f"  {p['role']:<10} pid {p['pid']:<7} {p['state'] or 'gone':<11}"
                     f" snapshot {'-' if age is None else f'{age:.1f}s old'}{' STALE' if p['stale'] else ''}"
                     + (f"  rss {p['rss_bytes'] // (1 << 20)} MiB" if p.get("rss_bytes") else "")
                     + (f"  handles {p['open_handles']}" if p.get("open_handles") is not None else ""))
    extra = []
    if st.get("worker_crashes"):
        extra.append(f"worker restarts {st['worker_crashes']}")
    if st.get("stuck_requests"):
        extra.append(f"stuck requests {st['stuck_requests']}")
    extra.append(f"host readers {st['host_requests']}")
    if st["unresolved_fallbacks"]:
        extra.append("unresolved " + ",".join(f"{r}={n}" for r, n in sorted(st["unresolved_fallbacks"].items())))
    lines.append("  " + ", ".join(extra))
    lines.append("")
    hdr = f"{'CONTAINER':<20} {'NAME':<16} {'ENGINE':<10} {'INIT':>7} {'FILES ok/stale/miss':>19} {'REQUESTS':>9}" \
          f" {'P50':>8} {'P99':>8}  FALLBACKS / LAST ERROR"
    lines.append(hdr)
    for r in st["containers"]:
        ms = r["mounted_summary"]
        fb = ",".join(f"{k}={v}" for k, v in sorted(r["fallbacks"].items())) or "-"
        err = r["last_error"]
        if err:
            fb += f"  last: {err.get('file')}: {err.get('reason')}: {err.get('message')}"
        lines.append(f"{r['id'][:20]:<20} {(r['name'] or '-')[:16]:<16} {r['engine'][:10]:<10} {r['init_pid']:>7}"
                     f" {ms['ok']:>9}/{ms['stale']}/{ms['missing']:<5} {r['requests']:>9} {_ms(r['p50_s']):>8}"
                     f" {_ms(r['p99_s']):>8}  {fb}")
    if not st["containers"]:
        lines.append("(no container has read a file yet)")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """`pylxcfs status` arguments."""
    ap = argparse.ArgumentParser(prog="pylxcfs status", description="Report the daemon's health and the containers "
                                 "it serves, from the snapshots it publishes; never blocks on the mount (a stopped or "
                                 "hung daemon is reported as such).",
                                 epilog="exit codes: 0 serving, 1 not running, 4 hung (stopped or not answering), "
                                 "5 dead (stale mount)")
    ap.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT, help=f"default {DEFAULT_MOUNTPOINT}")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("-p", "--pidfile", default=DEFAULT_PIDFILE, help=f"the daemon's pidfile (default "
                    f"{DEFAULT_PIDFILE}); its snapshots are in the .status directory next to it")
    ap.add_argument("--registry-dir", help="the hook's registry, for container names (default $PYLXCFS_REGISTRY_DIR "
                    "or /run/pylxcfs/containers)")
    ap.add_argument("--timeout", type=float, default=2.0, help="deadline of the mount probe in seconds (default 2)")
    return ap


def main(argv: list[str]) -> int:
    """Entry point of `pylxcfs status`."""
    args = build_parser().parse_args(argv)
    st = collect(args.mountpoint, args.pidfile, args.registry_dir, args.timeout)
    if args.json:
        sys.stdout.write(json.dumps(st, indent=1, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_text(st))
    return int(st["exit_code"])
