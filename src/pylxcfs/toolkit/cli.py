"""`isulad-lxcfs-toolkit` / `lxcfs-tools`: remount, umount, check-lxcfs, prestart, install-hook (docs/toolkit.md
§6). Argument parsing, exit codes and output only; the work lives in ops/probe/discovery and pylxcfs.ct.

Exit codes: 0 ok; 1 error (bad usage, unknown or ambiguous container, lxcfs not ready for remount, a single
container failed); 2 some container failed under --all with --strict; 3 unknown command. check-lxcfs: 0 serving,
1 absent, 4 hung (no answer within --timeout), 5 dead (stale mount, ENOTCONN), 6 error (the daemon answers, with an
error).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any, NoReturn

from pylxcfs import __version__
from pylxcfs import syscalls as sc
from pylxcfs.ct.apply import proc_start_time
from pylxcfs.ct.plan import DEFAULT_LXCFS_DIR
from pylxcfs.errors import QuietError
from pylxcfs.parse.mountinfo import parse_mountinfo, top_mount_at
from pylxcfs.toolkit import discovery, install, ops, probe, registry
from pylxcfs.toolkit import log as tlog
from pylxcfs.toolkit.resolve import resolve_id

log = logging.getLogger("pylxcfs.toolkit")
COMMANDS = ("remount", "umount", "check-lxcfs", "prestart", "install-hook")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 1 (urfave/cli's code in the original), not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _positive(v: str) -> float:
    f = float(v)
    if f <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return f


_GLOBAL_DEFAULTS: dict[str, Any] = {
    "lxcfs_dir": os.environ.get("PYLXCFS_LXCFS_DIR", DEFAULT_LXCFS_DIR), "log": None, "log_level": "info",
    "json": False, "registry_dir": None, "state_root": None, "no_procscan": False}


def _global_options(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--lxcfs-dir", default=default,
                   help=f"where the daemon is mounted (default {DEFAULT_LXCFS_DIR}; env PYLXCFS_LXCFS_DIR)")
    p.add_argument("--log", default=default, help="append log lines to FILE (created 0600) instead of stderr")
    p.add_argument("--log-level", default=default, choices=["debug", "info", "warning", "error"])
    p.add_argument("--json", action="store_true", default=default, help="print results as JSON on stdout")
    p.add_argument("--registry-dir", default=default,
                   help=f"hook registry (env PYLXCFS_REGISTRY_DIR, default {registry.DEFAULT_REGISTRY_DIR})")
    p.add_argument("--state-root", action="append", metavar="KIND:DIR", default=default,
                   help="runtime state root to scan, KIND runc|crun (repeatable; env PYLXCFS_STATE_ROOTS; "
                        "replaces the defaults)")
    p.add_argument("--no-procscan", action="store_true", default=default,
                   help="do not scan /proc for pid-namespace inits")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="isulad-lxcfs-toolkit", description="Mount pylxcfs/lxcfs views into running containers.",
                epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--version", action="version", version=f"lxcfs-tools version {__version__}")
    _global_options(p, argparse.SUPPRESS)
    for a in p._actions:  # real defaults live on the main parser only
        if a.dest in _GLOBAL_DEFAULTS:
            a.default = _GLOBAL_DEFAULTS[a.dest]
    common = _Parser(add_help=False)
    _global_options(common, argparse.SUPPRESS)  # global options are accepted after the command too
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, text in (("remount", "put the daemon's files over /proc/* in running containers"),
                       ("umount", "remove every lxcfs mount from containers' /proc and /sys (no daemon needed)")):
        s = sub.add_parser(name, help=text, description=text, parents=[common])
        s.add_argument("-a", "--all", action="store_true", help="containers set up for lxcfs: registered by the "
                       "hook, or named by a runtime state root and showing lxcfs mounts (live or stale)")
        s.add_argument("-c", "--container-id", help="exact id, unique id prefix, or name")
        s.add_argument("--pid", type=int, help="act on the container whose init has this host pid")
        s.add_argument("--include-unconfigured", action="store_true",
                       help="with --all: also every container a runtime state root names (never a namespace only "
                            "the /proc scan found)")
        s.add_argument("--strict", action="store_true", help="exit 2 when any container failed under --all")
        s.add_argument("--timeout", type=_positive, default=10.0, help="deadline per container, s (default 10)")
        s.add_argument("--parallel", type=int, default=4, help="containers in flight (default 4)")
        s.add_argument("--dry-run", action="store_true", help="print what would be done")
    c = sub.add_parser("check-lxcfs", parents=[common],
                       help="exit 0 if the daemon serves; 1 absent, 4 hung, 5 dead, 6 answers with an error")
    c.add_argument("--timeout", type=_positive, default=2.0, help="probe deadline, s (default 2)")
    c.add_argument("--wait", type=float, default=0.0, help="keep probing up to this many s until serving")
    sub.add_parser("prestart", parents=[common],
                   help="prepare the lxcfs dir on the host (own mount point, shared for rslave containers); "
                        "never touches a live daemon")
    i = sub.add_parser("install-hook", parents=[common],
                       help="write an iSulad hookspec, a hooks.d file or a runc hooks snippet")
    i.add_argument("--format", required=True, choices=["isulad", "hooksd", "runc"])
    i.add_argument("--dest", help="write here (atomically) instead of stdout")
    i.add_argument("--hook-path", help="absolute path of lxcfs-hook (default: next to this program)")
    i.add_argument("--hook-log", default=install.DEFAULT_HOOK_LOG, help="--log given to the hook (empty: none)")
    i.add_argument("--always", action="store_true", help="hooksd: every container (default: annotation "
                                                         "io.lxcfs.enable=true)")
    i.add_argument("--sysinfo", action="store_true", help="runc: add linux.seccomp with the sysinfo(2) notify rule "
                   "and the listenerPath of `pylxcfs --sysinfo` at --lxcfs-dir (docs/sysinfo.md: merging into an "
                   "existing profile; hooks cannot change seccomp, so isulad/hooksd refuse it)")
    return p


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(obj, indent=1))
    elif text:
        print(text)


def _candidates(args: argparse.Namespace) -> list[discovery.Candidate]:
    return discovery.discover(discovery.state_roots(args.state_root), registry.registry_dir(args.registry_dir),
                              discovery.procscan_enabled(args.no_procscan))


def cmd_remount_umount(args: argparse.Namespace) -> int:
    kind = args.command
    if args.pid is not None:
        start = proc_start_time(args.pid)
        if start is None:
            raise QuietError(f"{kind}: pid {args.pid} is not running", 1)
        targets = [discovery.Candidate(f"pid-{args.pid}", args.pid, start, "pid")]
    elif args.all:
        if args.container_id:
            log.warning("--all given: ignoring --container-id")
        targets = ops.select_for_all(_candidates(args), args.include_unconfigured,
                                     probe.canonical_dir(args.lxcfs_dir))
        log.info(f"{kind} for all containers set up for lxcfs: {len(targets)} found")
    elif args.container_id:
        targets = [resolve_id(args.container_id, _candidates(args))]
    else:
        raise QuietError(f"{kind}: You must choose at least one container (--all, --container-id or --pid)", 1)
    lxcfs_dir = probe.canonical_dir(args.lxcfs_dir)
    if args.dry_run:
        _emit(args, {"command": kind, "containers": [t.id for t in targets]},
              "\n".join(f"would {kind} {t.id} (pid {t.pid}, {t.source})" for t in targets))
        return 0
    if kind == "remount":
        pr = probe.probe(lxcfs_dir)
        if pr.health != probe.Health.SERVING:
            raise QuietError(f"lxcfs is not ready: {pr.detail}", 1)
        live = probe.daemon_mount(lxcfs_dir)
        results = ops.remount(targets, lxcfs_dir, args.parallel, args.timeout, live.dev if live else None)
    else:
        results = ops.umount(targets, args.parallel, args.timeout)
    line = ops.summary(kind, results)
    log.info(line)
    _emit(args, {"command": kind, "summary": line, "results": [r.to_json() for r in results]}, line)
    failed = [r for r in results if r.status != "ok"]
    if not failed:
        return 0
    if not args.all:
        for r in failed:
            print(f"{kind} {r.id}: {r.error}", file=sys.stderr)
        return 1
    return 2 if args.strict else 0


def cmd_check(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + max(0.0, args.wait)
    while True:
        pr = probe.probe(args.lxcfs_dir, args.timeout)
        if pr.health == probe.Health.SERVING or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    msg = "lxcfs is running" if pr.health == probe.Health.SERVING else f"lxcfs is not ready ({pr.health.name.lower()})"
    (log.info if pr.health == probe.Health.SERVING else log.error)(f"{msg}: {pr.detail}")
    _emit(args, {"command": "check-lxcfs", "health": pr.health.name.lower(), "code": int(pr.health),
                 "detail": pr.detail, "elapsed_s": round(pr.elapsed_s, 3)}, "")
    return int(pr.health)


def _self_mounts() -> list[Any]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def cmd_prestart(args: argparse.Namespace) -> int:
    """Make the lxcfs dir its own mount point in its own shared peer group, so that containers binding it (or its
    parent) `rslave` receive the daemon's mount and later remounts; never detach a live or hung daemon."""
    d = probe.canonical_dir(args.lxcfs_dir)
    log.info("do prestart", extra={"kv": {"dir": d}})
    top = top_mount_at(_self_mounts(), d)
    if top is not None and top.is_fuse:
        pr = probe.probe(d)
        if pr.health != probe.Health.DEAD:
            log.info(f"{d} is already mounted ({pr.health.name.lower()}); leaving it alone")
            return 0
        log.warning(f"releasing a stale mount at {d}: {pr.detail}")
        sc.umount2(d, sc.MNT_DETACH)
        top = top_mount_at(_self_mounts(), d)
    os.makedirs(d, mode=0o755, exist_ok=True)
    if top is None:
        sc.mount(d, d, None, sc.MS_BIND)
        # A bind inherits the parent's peer group; private-then-shared gives the dir a peer group of its own, so
        # the daemon's mount propagates to rslave container copies of it and nowhere else.
        sc.mount(None, d, None, sc.MS_PRIVATE)
        sc.mount(None, d, None, sc.MS_SHARED)
        log.info(f"bound {d} onto itself (shared)")
    elif not top.is_shared:
        sc.mount(None, d, None, sc.MS_SHARED)
        log.info(f"made {d} shared")
    log.info("prestart done")
    return 0


def cmd_install_hook(args: argparse.Namespace) -> int:
    hook_path = args.hook_path or install.hook_binary()
    if not os.path.isabs(hook_path):
        raise QuietError(f"--hook-path must be absolute: {hook_path!r}", 1)
    lxcfs_dir = None if args.lxcfs_dir == DEFAULT_LXCFS_DIR else args.lxcfs_dir
    # Only an explicit --registry-dir is passed on (the env var is the caller's, not the engine's).
    obj = install.render(args.format, hook_path, args.hook_log or None, lxcfs_dir, args.always,
                         registry_dir=args.registry_dir)
    if args.sysinfo:
        if args.format != "runc":
            raise QuietError(f"--sysinfo: a {args.format} hook cannot change a container's seccomp profile; use the "
                             "runc fragment or lxcfs-runc (docs/sysinfo.md)", 2)
        from pylxcfs.sysinfo import client, seccomp_merge

        try:
            sock = client.socket_for(args.lxcfs_dir)
        except ValueError as e:
            raise QuietError(f"--sysinfo: {e}", 2) from None
        obj["linux"] = {"seccomp": seccomp_merge.fragment(sock)}
    text = json.dumps(obj, indent=2) + "\n"
    if args.dest:
        install.write_atomic(args.dest, text, 0o640 if args.format == "isulad" else 0o644)
        log.info(f"wrote {args.format} hook file {args.dest}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Unknown command: exit 3 like the original (urfave/cli "No help topic for ...").
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS and first != "help":
        prev = argv[argv.index(first) - 1] if argv.index(first) > 0 else ""
        if prev not in ("--lxcfs-dir", "--log", "--log-level", "--registry-dir", "--state-root"):
            print(f"No help topic for '{first}'", file=sys.stderr)
            return 3
    if not argv or argv[0] == "help":
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        tlog.setup("toolkit", args.log_level, args.log)
        handler = {"remount": cmd_remount_umount, "umount": cmd_remount_umount, "check-lxcfs": cmd_check,
                   "prestart": cmd_prestart, "install-hook": cmd_install_hook}[args.command]
        return handler(args)
    except QuietError as exc:
        log.error(str(exc))
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        log.error(f"{args.command}: {exc}")
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
