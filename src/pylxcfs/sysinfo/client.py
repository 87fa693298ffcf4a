"""Talking to the sysinfo agent: where its socket is, whether it answers, reload or start it.

Used by the daemon CLI (`pylxcfs --sysinfo`), the toolkit (`install-hook --sysinfo`) and contrib/engines/lxcfs-runc
(which only adds the notify rule to a container's profile when `ping` answers: a container always starts).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from pylxcfs.fuse.config import DaemonConfig

SUFFIX = ".sysinfo.sock"
SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1


def socket_for(lxcfs_dir: str) -> str:
    """The agent's socket (the OCI listenerPath) for a daemon mounted at lxcfs_dir: a sibling of the mount point,
    /var/lib/lxc/lxcfs -> /var/lib/lxc/lxcfs.sysinfo.sock (inside the FUSE mount it could not be a socket)."""
    path = os.path.normpath(os.path.abspath(lxcfs_dir)) + SUFFIX
    if len(path.encode()) > SUN_PATH_MAX:
        raise ValueError(f"sysinfo socket path {path!r} is longer than a unix socket address allows "
                         f"({SUN_PATH_MAX} bytes)")
    return path


def _ask(path: str, line: str, timeout: float) -> str | None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(line.encode() + b"\n")
            out = b""
            while not out.endswith(b"\n"):
                got = s.recv(4096)
                if not got:
                    break
                out += got
            return out.decode(errors="replace").strip() or None
    except OSError:
        return None


def ping(path: str, timeout: float = 2.0) -> dict[str, str] | None:
    """The agent's PONG fields (pid, listeners, answered, continued, gone), or None if nothing answers."""
    out = _ask(path, "PING", timeout)
    if out is None or not out.startswith("PONG"):
        return None
    return dict(kv.split("=", 1) for kv in out.split()[1:] if "=" in kv)


def reload(path: str, cfg: DaemonConfig, timeout: float = 5.0) -> bool:
    """Ask a running agent to hand over to a new one from the code on disk, with cfg's view options."""
    return _ask(path, "RELOAD " + json.dumps(cfg.to_json()), timeout) == "OK"


def start(path: str, cfg: DaemonConfig, timeout: float = 20.0) -> dict[str, str]:
    """Start a detached agent (its own session, not a child of the daemon's process tree) and wait until it answers.
    Raises RuntimeError with the reason if it does not."""
    argv = [sys.executable, "-m", "pylxcfs.sysinfo.agent", "--socket", path, "--config", json.dumps(cfg.to_json()),
            "--detach"]
    # stderr is inherited (the daemon's log): the detached agent keeps it, so it must not be a pipe we wait on.
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sysinfo agent did not start (exit {proc.returncode}; its reason is in the log)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pong = ping(path)
        if pong is not None:
            return pong
        time.sleep(0.05)
    raise RuntimeError(f"sysinfo agent does not answer on {path}")


def ensure(path: str, cfg: DaemonConfig) -> str:
    """The daemon's hook: reload a running agent (new code, these options) or start one. Returns what was done."""
    if ping(path) is not None:
        if reload(path, cfg):
            return "reloaded"
        return "running"
    start(path, cfg)
    return "started"
