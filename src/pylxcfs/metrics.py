"""The Prometheus exporter: `pylxcfs --metrics-listen ADDR:PORT` (or `unix:PATH`) serves the text exposition
format at /metrics.

It is a small process of its own, started by the daemon before it mounts and killed with it
(PR_SET_PDEATHSIG): a scrape never runs in a process that serves FUSE requests or holds the FUSE
connection, and a wedged daemon still gets scraped (its numbers stop moving, `pylxcfs_snapshot_age_seconds`
grows). Each scrape reads the snapshots the daemon's processes publish (statusdir.py) through a
prometheus_client custom collector, so there is no second copy of any counter.

Series (per-container ones carry `container`, the engine's id where known, else the cgroup's name):
  pylxcfs_requests_total{container,file}             renders served to the container
  pylxcfs_render_seconds{container,file}             histogram of render time
  pylxcfs_fallbacks_total{container,file,reason}     host file served instead, by exception type
  pylxcfs_container_info{container,name,engine,init_pid}  1 per served container
  pylxcfs_host_requests_total, pylxcfs_unresolved_fallbacks_total{file,reason}
  pylxcfs_worker_restarts_total, pylxcfs_workers{state}, pylxcfs_stuck_requests, pylxcfs_open_handles
  pylxcfs_process_resident_memory_bytes{role,pid}, pylxcfs_snapshot_age_seconds{role,pid}, pylxcfs_up
  pylxcfs_build_info{version}
Bounded cardinality: a container whose init is gone has no series at the next scrape.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import socketserver
import stat
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from pylxcfs import __version__
from pylxcfs.identify import Identifier
from pylxcfs.stats import BUCKETS_S
from pylxcfs.status import STALE_AFTER_S, merge_containers, proc_state, rss_bytes
from pylxcfs.statusdir import read_all

READY_TIMEOUT_S = 20.0


class Listen:
    """One --metrics-listen address: ("tcp", host, port) or ("unix", path)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        if spec.startswith("unix:"):
            self.kind, self.path = "unix", spec[5:]
            if not self.path.startswith("/"):
                raise ValueError(f"{spec}: a unix socket path must be absolute")
            self.host, self.port = "", 0
            return
        host, sep, port = spec.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{spec}: expected ADDR:PORT, [IPv6]:PORT, :PORT or unix:/PATH")
        self.kind, self.path = "tcp", ""
        self.host = host.strip("[]") or "0.0.0.0"
        self.port = int(port)


def parse_listen(spec: str) -> Listen:
    """argparse type for --metrics-listen."""
    try:
        return Listen(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class SnapshotCollector(Collector):
    """Reads the status directory at each scrape."""

    def __init__(self, status_dir: str, registry_dir: str | None = None) -> None:
        self.status_dir = status_dir
        self.registry_dir = registry_dir

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        sup, workers = read_all(self.status_dir)
        live_workers = {pid: s for pid, s in workers.items() if proc_state(pid) is not None}
        ident = Identifier(self.registry_dir)
        requests = CounterMetricFamily("pylxcfs_requests", "Virtual files rendered for a container",
                                       labels=["container", "file"])
        latency = HistogramMetricFamily("pylxcfs_render_seconds", "Time to render a virtual file for a container",
                                        labels=["container", "file"])
        fallbacks = CounterMetricFamily("pylxcfs_fallbacks", "Host file served instead of the container's view",
                                        labels=["container", "file", "reason"])
        info = GaugeMetricFamily("pylxcfs_container_info", "A container the daemon serves (1)",
                                 labels=["container", "name", "engine", "init_pid"])
        seen: dict[str, int] = {}
        for m in merge_containers(workers).values():
            who = ident.identify(m["init_pid"], m["start_ticks"], m["cgroup"])
            label = who.id
            if label in seen and seen[label] != m["init_pid"]:
                label = f"{who.id}@{m['init_pid']}"  # two inits under one name (nested pid namespaces)
            seen[label] = m["init_pid"]
            info.add_metric([label, who.name or "", who.engine, str(m["init_pid"])], 1)
            for path, f in sorted(m["files"].items()):
                requests.add_metric([label, path], f["requests"])
                cum, buckets = 0, []
                for bound, n in zip((*BUCKETS_S, float("inf")), f["buckets"], strict=False):
                    cum += n
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cum))
                latency.add_metric([label, path], buckets, f["sum_ns"] / 1e9)
            for path, reasons in sorted(m["fallbacks"].items()):
                for reason, n in sorted(reasons.items()):
                    fallbacks.add_metric([label, path, reason], n)
        yield from (requests, latency, fallbacks, info)

        host = CounterMetricFamily("pylxcfs_host_requests", "Reads by processes in the daemon's pid namespace "
                                   "(served the host file)")
        host.add_metric([], sum(int(s.get("host_requests", 0)) for s in workers.values()))
        yield host
        unres = CounterMetricFamily("pylxcfs_unresolved_fallbacks", "Host file served because the reader's "
                                    "container could not be resolved", labels=["file", "reason"])
        totals: dict[tuple[str, str], int] = {}
        for s in workers.values():
            for path, reasons in (s.get("unresolved_fallbacks") or {}).items():
                for reason, n in reasons.items():
                    totals[(path, reason)] = totals.get((path, reason), 0) + int(n)
        for (path, reason), n in sorted(totals.items()):
            unres.add_metric([path, reason], n)
        yield unres

        sup_alive = sup is not None and proc_state(int(sup.get("pid", 0))) is not None
        up = GaugeMetricFamily("pylxcfs_up", "1 when the daemon's processes are alive and publishing")
        fresh = sup_alive and sup is not None and now - sup.get("_mtime", 0) <= STALE_AFTER_S
        up.add_metric([], 1 if (fresh or (sup is None and live_workers)) else 0)
        yield up
        build = GaugeMetricFamily("pylxcfs_build_info", "pylxcfs version", labels=["version"])
        build.add_metric([str((sup or {}).get("version") or __version__)], 1)
        yield build
        restarts = CounterMetricFamily("pylxcfs_worker_restarts", "Workers that died and were replaced")
        restarts.add_metric([], int((sup or {}).get("worker_crashes") or 0))
        yield restarts
        states = GaugeMetricFamily("pylxcfs_workers", "Worker processes by state", labels=["state"])
        counts = {"serving": 0, "starting": 0, "retiring": 0}
        for w in (sup or {}).get("workers") or []:
            counts["retiring" if w.get("retiring") else "serving" if w.get("ready") else "starting"] += 1
        if sup is None:
            counts["serving"] = len(live_workers)
        for k, v in counts.items():
            states.add_metric([k], v)
        yield states
        stuck = GaugeMetricFamily("pylxcfs_stuck_requests", "Requests the watchdog found stuck")
        stuck.add_metric([], int((sup or {}).get("stuck_requests") or 0)
                         + sum(int((s.get("gauges") or {}).get("stuck_requests", 0)) for s in live_workers.values()))
        yield stuck
        handles = GaugeMetricFamily("pylxcfs_open_handles", "Open file handles held by the serving workers")
        handles.add_metric([], sum(int((s.get("gauges") or {}).get("open_handles", 0)) for s in live_workers.values()))
        yield handles
        rss = GaugeMetricFamily("pylxcfs_process_resident_memory_bytes", "Resident memory of the daemon's processes",
                                labels=["role", "pid"])
        age = GaugeMetricFamily("pylxcfs_snapshot_age_seconds", "Age of each process's last published snapshot",
                                labels=["role", "pid"])
        procs: list[tuple[str, int, dict[str, Any] | None]] = [("exporter", os.getpid(), None)]
        if sup is not None and sup_alive:
            procs.append(("supervisor", int(sup["pid"]), sup))
        procs.extend(("worker", pid, s) for pid, s in sorted(live_workers.items()))
        for role, pid, snap in procs:
            r = rss_bytes(pid)
            if r is not None:
                rss.add_metric([role, str(pid)], r)
            if snap is not None and "_mtime" in snap:
                age.add_metric([role, str(pid)], round(now - snap["_mtime"], 3))
        yield rss
        yield age


def make_registry(status_dir: str, registry_dir: str | None = None) -> CollectorRegistry:
    """A registry holding only the snapshot collector (no default process/platform collectors: the exporter's
    own process is not what an operator asks about)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(status_dir, registry_dir))
    return reg


def _handler(reg: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            try:
                body = generate_latest(reg)
            except Exception as e:  # a broken snapshot must not kill the exporter
                self.send_error(500, str(e)[:200])
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class _TCPServer(ThreadingHTTPServer):
    daemon_threads = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    os.unlink(path)


def bind(listen: Listen, reg: CollectorRegistry) -> socketserver.BaseServer:
    """A bound (not yet serving) HTTP server for one address."""
    try:
        return _bind(listen, _handler(reg))
    except OSError as e:
        raise OSError(f"--metrics-listen {listen.spec}: {e.strerror or e}") from None


def _bind(listen: Listen, handler: type[BaseHTTPRequestHandler]) -> socketserver.BaseServer:
    if listen.kind == "unix":
        _remove_stale_socket(listen.path)
        old = os.umask(0o117)  # srw-rw----: root and the socket's group may scrape
        try:
            return _UnixServer(listen.path, handler)
        finally:
            os.umask(old)
    cls: type[_TCPServer] = _TCPServer
    if ":" in listen.host:
        cls = type("_TCP6Server", (_TCPServer,), {"address_family": socket.AF_INET6})
    return cls((listen.host, listen.port), handler)


def serve(listens: list[Listen], status_dir: str, registry_dir: str | None = None,
          ready: Any = None) -> None:
    """Bind every address, report readiness, serve until SIGTERM/SIGINT."""
    reg = make_registry(status_dir, registry_dir)
    servers = [bind(li, reg) for li in listens]
    if ready is not None:
        ready()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _n, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _n, _f: stop.set())
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True) for s in servers]
    for t in threads:
        t.start()
    while not stop.wait(1.0):
        pass
    for s, li in zip(servers, listens, strict=True):
        s.shutdown()
        s.server_close()
        if li.kind == "unix":
            with contextlib.suppress(OSError):
                os.unlink(li.path)


def spawn(listens: list[Listen], status_dir: str, registry_dir: str | None = None) -> int:
    """Start the exporter process (a child of this one, killed when this one dies) and wait until it has
    bound its addresses; raises OSError with its message if it could not. Returns its pid."""
    import subprocess

    rfd, wfd = os.pipe()
    argv = [sys.executable, "-m", "pylxcfs.metrics", "--status-dir", status_dir, "--ready-fd", str(wfd),
            "--parent", str(os.getpid())]
    if registry_dir:
        argv += ["--registry-dir", registry_dir]
    for li in listens:
        argv += ["--listen", li.spec]
    try:
        proc = subprocess.Popen(argv, pass_fds=(wfd,), close_fds=True, stdin=subprocess.DEVNULL)
    finally:
        os.close(wfd)
    try:
        import select

        r, _, _ = select.select([rfd], [], [], READY_TIMEOUT_S)
        msg = os.read(rfd, 4096).decode(errors="replace") if r else ""
    finally:
        os.close(rfd)
    if msg.startswith("R"):
        return proc.pid
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    raise OSError(f"metrics exporter: {msg[2:] if msg.startswith('E') else 'did not start'}")


def main(argv: list[str] | None = None) -> int:
    """`python -m pylxcfs.metrics`: the exporter process (started by the daemon, or by hand with --status-dir)."""
    ap = argparse.ArgumentParser(prog="pylxcfs-metrics", description="Prometheus exporter for a pylxcfs daemon's "
                                 "status directory")
    ap.add_argument("--status-dir", required=True)
    ap.add_argument("--listen", action="append", type=parse_listen, required=True)
    ap.add_argument("--registry-dir")
    ap.add_argument("--ready-fd", type=int, default=-1)
    ap.add_argument("--parent", type=int, default=0, help="exit with this process")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.parent:
        from pylxcfs import syscalls

        syscalls.set_pdeathsig(signal.SIGTERM)
        if os.getppid() != args.parent:
            return 1

    def report(msg: str) -> None:
        if args.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(args.ready_fd, msg.encode()[:4000])
                os.close(args.ready_fd)
            args.ready_fd = -1

    try:
        serve(args.listen, args.status_dir, args.registry_dir, ready=lambda: report("R"))
    except OSError as e:
        report(f"E {e}")
        print(f"pylxcfs-metrics: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
