"""`lxcfs-hook`: the OCI hook (iSulad prestart, runc/crun prestart/createRuntime/createContainer, podman/CRI-O
hooks.d). Reads the OCI state on stdin, finds the rootfs, mounts every file the daemon serves over <rootfs>/proc/*
and <rootfs>/sys/devices/system/cpu/online with private propagation, and registers the container for later
`remount --all` / `umount --all`.

Stages (engines.md §1): prestart/createRuntime run in the runtime's namespaces with the container init's HOST pid:
the worker setns()es into that pid's mount namespace (before pivot_root, the rootfs is still at its host path).
createContainer runs inside the container's mount namespace with pid 1 (runc) or 0 (crun): the state pid is never
used there; the worker stays in its namespace, and the hook refuses to mount when that namespace is the host's (pid
1's). The stage is never guessed: without --stage only a state pid > 1 in another mount namespace (a host-side
stage) is accepted; anything else is refused, as is a rootfs of "/".

Never blocks a container start unless --strict (design.md §3.6): every failure is logged with the container id and
the reason, and the hook exits 0. Targets are resolved inside the rootfs with openat2(RESOLVE_IN_ROOT) (ct/apply.py),
so a planted symlink cannot lead a mount onto a host path.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
import time
from typing import NoReturn

from pylxcfs import forkjob
from pylxcfs.ct import apply
from pylxcfs.ct.oci import (
    HookInputError,
    OciConfig,
    OciState,
    container_name,
    parse_config,
    parse_state,
    resolve_rootfs,
    valid_container_id,
)
from pylxcfs.ct.plan import DEFAULT_LXCFS_DIR, attach_plan
from pylxcfs.errors import QuietError
from pylxcfs.toolkit import log as tlog
from pylxcfs.toolkit import probe, registry, safefile

log = logging.getLogger("pylxcfs.hook")
HOST_STAGES = ("prestart", "createRuntime")
INSIDE_STAGES = ("createContainer",)
MAX_STATE_BYTES = 1 << 20


class _Parser(argparse.ArgumentParser):
    """A misconfigured hook entry must not block every container start either (fail-open, design.md §3.6): a usage
    error is reported on stderr (which the runtime logs) and exits 0, or 2 when --strict is among the arguments."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        strict = "--strict" in sys.argv[1:]
        self.exit(2 if strict else 0, f"{self.prog}: error: {message}\n")


def _positive(v: str) -> float:
    f = float(v)
    if not f > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return f


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lxcfs-hook", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--log", help="append log lines to FILE (0600) instead of stderr")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--lxcfs-dir", default=os.environ.get("PYLXCFS_LXCFS_DIR", DEFAULT_LXCFS_DIR))
    p.add_argument("--stage", choices=[*HOST_STAGES, *INSIDE_STAGES, "poststop"],
                   help="OCI stage this hook is installed at (required, except that a state pid > 1 in another "
                        "mount namespace is taken as a host-side stage); poststop only drops the registry record")
    p.add_argument("--strict", action="store_true", help="exit 1 on any failure (blocks the container start)")
    p.add_argument("--registry-dir", help=f"default {registry.DEFAULT_REGISTRY_DIR} (env PYLXCFS_REGISTRY_DIR)")
    p.add_argument("--timeout", type=_positive, default=5.0, help="deadline for the mount work, s (default 5; keep it "
                                                              "below the hook's timeout in the spec)")
    p.add_argument("--probe-timeout", type=_positive, default=2.0,
                   help="how long the daemon may take to answer the readiness read before the container starts "
                        "with host values, s (default 2; capped by --timeout; raise it on slow or emulated hosts)")
    p.add_argument("--no-register", action="store_true", help="do not record the container in the registry")
    return p


def read_stdin(limit: int = MAX_STATE_BYTES, timeout_s: float = 5.0) -> str:
    """All of stdin, bounded in size and time (a runtime closes it after writing the state)."""
    fd = sys.stdin.fileno()
    chunks: list[bytes] = []
    total = 0
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise HookInputError(f"no end of the OCI state on stdin within {timeout_s:g}s")
        b = os.read(fd, 65536)
        if not b:
            break
        total += len(b)
        if total > limit:
            raise HookInputError(f"OCI state on stdin is larger than {limit} bytes")
        chunks.append(b)
    return b"".join(chunks).decode("utf-8", "replace")


def _load_config(state: OciState, timeout_s: float) -> OciConfig | None:
    """The bundle's config.json: a regular file only (a FIFO or a device planted there is refused before it is
    opened for reading), bounded in size and read within `timeout_s`."""
    if not state.bundle:
        return None
    path = os.path.join(state.bundle, "config.json")
    try:
        data = safefile.read_regular(path, MAX_STATE_BYTES * 16, timeout_s)
    except FileNotFoundError:
        return None
    except safefile.UnsafeFileError as exc:
        raise HookInputError(f"cannot use {path}: {exc}") from None
    except OSError as exc:
        raise HookInputError(f"cannot read {path}: {exc}") from None
    return parse_config(data.decode("utf-8", "replace"))


def _same_mntns(a: str, b: str) -> bool | None:
    """Whether two /proc/<x>/ns/mnt links name the same namespace; None when either cannot be read."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return None
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def decide_stage(flag: str | None, state: OciState) -> str:
    """The stage to act as. Given by --stage, or derived only from a fact checked here: a state pid > 1 whose mount
    namespace is not ours can only be a host-side stage (prestart/createRuntime act alike). Anything else is refused:
    pid 0/1 or none could be createContainer, or a hook run by hand in some private namespace with "root": "/"."""
    if flag:
        return flag
    pid = state.pid
    if pid is not None and pid > 1 and _same_mntns(f"/proc/{pid}/ns/mnt", "/proc/self/ns/mnt") is False:
        return "createRuntime"
    raise HookInputError(f"no --stage given and the state's pid ({pid}) does not show where the hook runs; "
                         "install the hook with --stage prestart|createRuntime|createContainer")


def _ppid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def host_mntns_reference() -> tuple[str, str] | None:
    """(ns link, what it is) of the host's mount namespace as far as we can see it: pid 1's, or, where pid 1's link
    cannot be read (a sandboxed init), that of our outermost ancestor whose link can be read."""
    if _same_mntns("/proc/1/ns/mnt", "/proc/1/ns/mnt"):
        return "/proc/1/ns/mnt", "pid 1's"
    best = None
    pid = os.getpid()
    for _ in range(4096):  # bounded walk up the process tree
        ppid = _ppid_of(pid)
        if ppid is None or ppid <= 0:
            break
        if _same_mntns(f"/proc/{ppid}/ns/mnt", f"/proc/{ppid}/ns/mnt"):
            best = ppid
        if ppid == 1:
            break
        pid = ppid
    return (f"/proc/{best}/ns/mnt", f"that of pid {best}, the outermost ancestor we can inspect") if best else None


def check_inside() -> None:
    """createContainer: the hook must be in the container's own mount namespace, never the host's."""
    ref = host_mntns_reference()
    same = _same_mntns("/proc/self/ns/mnt", ref[0]) if ref else None
    if ref is None or same is None:
        raise HookInputError("stage createContainer: cannot tell whether we are in the host's mount namespace; "
                             "refusing to mount")
    if same:
        raise HookInputError(f"stage createContainer, but the hook runs in the host's mount namespace ({ref[1]}); "
                             "refusing to mount")


def _host_pid_inside() -> int | None:
    """In createContainer our parent is the container's init. Before pivot_root /proc is still the host's procfs,
    where /proc/self/status PPid is the HOST pid (procfs answers in its own pid namespace)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PPid:"):
                    pid = int(line.split()[1])
                    return pid if pid > 1 else None
    except (OSError, ValueError):
        pass
    return None


def run(args: argparse.Namespace, kv: dict[str, object]) -> bool:
    """Do the hook's work; returns True when everything that should be mounted was. Raises QuietError for input
    errors."""
    state = parse_state(read_stdin())
    kv["container"] = state.id
    if args.stage == "poststop":
        registry.remove(registry.registry_dir(args.registry_dir), state.id)
        log.info("unregistered", extra={"kv": kv})
        return True
    config = _load_config(state, args.timeout)
    rootfs = resolve_rootfs(state, config)
    stage = decide_stage(args.stage, state)
    kv["stage"] = stage
    inside = stage in INSIDE_STAGES
    if not inside and (state.pid is None or state.pid <= 1):
        raise HookInputError(f"stage {stage} needs the container's host pid; the state has pid {state.pid}")
    if rootfs == "/":
        raise HookInputError("the rootfs is / itself: refusing to mount over this namespace's own /proc and /sys")
    if inside:
        check_inside()
    if not os.path.isdir(rootfs):
        raise HookInputError(f"rootfs {rootfs} does not exist")
    pid = None if inside else state.pid
    start_time = None
    if pid is not None:
        start_time = apply.proc_start_time(pid)
        if start_time is None:
            raise HookInputError(f"container pid {pid} is not running")
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
                raise HookInputError(f"pid {pid} is in the hook's own mount namespace; refusing to mount")
        except OSError as exc:
            raise HookInputError(f"cannot inspect pid {pid}: {exc}") from None
    log.info(f"PID:{state.pid} Root:{rootfs}", extra={"kv": kv})
    lxcfs_dir = probe.canonical_dir(args.lxcfs_dir)
    ok = True
    pr = probe.probe(lxcfs_dir, min(args.probe_timeout, args.timeout))
    if pr.health != probe.Health.SERVING:
        log.error(f"lxcfs is not ready, container starts with host values: {pr.detail}", extra={"kv": kv})
        ok = False
    else:
        live = probe.daemon_mount(lxcfs_dir)
        plan = attach_plan(state.id, lxcfs_dir, rootfs, pid, start_time, live_dev=live.dev if live else None)
        res = forkjob.run_one(state.id, lambda: apply.attach(plan), args.timeout)
        if not res.ok:
            log.error(f"mount into container failed: {res.error}", extra={"kv": kv})
            ok = False
        for o in res.data.get("outcomes", []):
            okv = {**kv, "target": o["target"]}
            if o["action"] == "failed":
                log.error(f"cannot mount: {o['detail']}", extra={"kv": okv})
                ok = False
            elif o["action"] == "skipped":
                log.info(f"skipped: {o['detail']}", extra={"kv": okv})
            else:
                log.debug(f"{o['action']}: {o['detail']}", extra={"kv": okv})
        mounted = sum(1 for o in res.data.get("outcomes", []) if o["action"] == "mounted")
        log.info(f"mounted {mounted} lxcfs files ({res.data.get('method', '-')})", extra={"kv": kv})
    if not args.no_register:
        if not valid_container_id(state.id):
            log.error("not registering: container id is not a safe file name", extra={"kv": kv})
            ok = False
        else:
            rpid = _host_pid_inside() if inside else pid
            rec = registry.Record(state.id, rpid, apply.proc_start_time(rpid) if rpid else None, rootfs,
                                  state.bundle, container_name({**(config.annotations if config else {}),
                                                                **state.annotations}),
                                  lxcfs_dir, stage, time.time())
            try:
                registry.write(registry.registry_dir(args.registry_dir), rec)
            except (OSError, ValueError) as exc:
                log.error(f"cannot register container: {exc}", extra={"kv": kv})
                ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    tlog.setup("hook", args.log_level, args.log)
    kv: dict[str, object] = {"container": None, "stage": args.stage}
    try:
        ok = run(args, kv)
    except QuietError as exc:
        log.error(f"lxcfs-hook: {exc}", extra={"kv": kv})
        ok = False
    except Exception as exc:  # the hook must never block a start by crashing (fail-open unless --strict)
        log.exception(f"lxcfs-hook: unexpected error: {exc}", extra={"kv": kv})
        ok = False
    if not ok and args.strict:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
