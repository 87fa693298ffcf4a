"""The fd keeper: a second, tiny process that holds a copy of everything the sysinfo agent holds, so that the
agent's death (a crash, the OOM killer, `kill -9` of the pid in its pidfile) closes no container's listener.

The agent (agent.py) starts it and tells it, over a SOCK_SEQPACKET pair, one message each:
  H + [listening socket, lock]      at start
  L{json} + [listener fd]           a new listener (key = the agent's fd number)
  X{json}                           that listener is gone
  R{json} / D{json}                 a notification received / answered (id, pid, arch, nr, arg0)
  BYE                               a clean exit or a finished reload: the keeper exits too
When the pair reaches EOF without BYE, the agent died: the keeper starts a new agent from the code on disk and
hands it the socket, the lock, every listener and the notifications the dead agent had received but not answered
(the new agent answers those first), then exits; the new agent starts its own keeper. Meanwhile the containers'
calls wait in the kernel's queue and runtimes' connections in the socket's backlog. If no new agent comes up, the
keeper answers every call with SECCOMP_USER_NOTIF_FLAG_CONTINUE (the kernel's own figures) and retries, holding
the socket and the lock so that runtimes keep connecting.
If the agent dies while the keeper is also gone (both killed at once), the listeners close: docs/sysinfo.md.
The keeper itself is restarted by the agent when it dies. It never reads the cgroups or writes a caller's memory.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import select
import socket
import sys
import time
from typing import Any

from pylxcfs import syscalls
from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.log import setup_logging

log = logging.getLogger("pylxcfs.sysinfo.keeper")

RETRY_S = 5.0  # with no agent, a new one is tried this often; calls get CONTINUE in between


class Keeper:
    """The state mirrored from the agent."""

    def __init__(self) -> None:
        self.listen_fd = -1
        self.lock_fd = -1
        self.held: dict[int, tuple[int, dict[str, Any]]] = {}  # agent's fd -> (our fd, description)
        self.pending: dict[int, dict[int, dict[str, int]]] = {}  # agent's fd -> notification id -> notification

    def apply(self, msg: bytes, fds: list[int]) -> bool:
        """One message from the agent; False on BYE."""
        kind, body = msg[:1], msg[1:]
        if msg == b"BYE":
            return False
        if kind == b"H" and len(fds) == 2:
            for old in (self.listen_fd, self.lock_fd):
                if old >= 0:
                    os.close(old)
            self.listen_fd, self.lock_fd = fds
            return True
        d = json.loads(body.decode()) if body else {}
        key = int(d.get("key", -1))
        if kind == b"L" and fds:
            prev = self.held.pop(key, None)
            if prev is not None:
                os.close(prev[0])
            self.held[key] = (fds[0], {k: v for k, v in d.items() if k != "key"})
        elif kind == b"X":
            prev = self.held.pop(key, None)
            if prev is not None:
                os.close(prev[0])
            self.pending.pop(key, None)
        elif kind == b"R":
            self.pending.setdefault(key, {})[int(d["id"])] = {k: int(v) for k, v in d.items() if k != "key"}
        elif kind == b"D":
            self.pending.get(key, {}).pop(int(d["id"]), None)
        for extra in fds[1:] if kind == b"L" else ([] if kind == b"H" else fds):
            os.close(extra)
        return True

    def items(self) -> list[tuple[dict[str, Any], int]]:
        return [(dict(desc, pending=list(self.pending.get(key, {}).values())), fd)
                for key, (fd, desc) in self.held.items()]

    def continue_all(self, seconds: float) -> None:
        """No agent: let the kernel answer every call (pending ones first) for `seconds`."""
        for key, notifs in self.pending.items():
            fd = self.held.get(key, (-1, {}))[0]
            for nid in notifs:
                with contextlib.suppress(OSError):
                    syscalls.notif_send(fd, nid, flags=syscalls.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        self.pending.clear()
        poller = select.poll()
        by_fd = {fd: key for key, (fd, _d) in self.held.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        end = time.monotonic() + seconds
        if not by_fd:
            time.sleep(seconds)
        while time.monotonic() < end and by_fd:
            for fd, ev in poller.poll(500):
                if ev & select.POLLIN:
                    try:
                        n = syscalls.notif_recv(fd)
                        syscalls.notif_send(fd, n.id, flags=syscalls.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
                    except OSError as e:
                        if e.errno not in (errno.ENOENT, errno.EINTR):
                            log.warning("listener %d: %s", fd, e)
                elif ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    poller.unregister(fd)
                    self.held.pop(by_fd.pop(fd), None)
                    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """`python -m pylxcfs.sysinfo.keeper --socket PATH --config JSON --fd N` (started by the agent)."""
    ap = argparse.ArgumentParser(prog="pylxcfs-sysinfo-keeper")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--config", default="{}")
    ap.add_argument("--fd", type=int, required=True)
    args = ap.parse_args(argv)
    cfg = dataclasses.replace(DaemonConfig.from_json(json.loads(args.config)), status_dir=None)
    setup_logging(cfg.debug, tag=f"pylxcfs-sysinfo-keeper[{os.getpid()}]")
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("-1000")
    ch = socket.socket(fileno=args.fd)
    k = Keeper()
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ch, 65536, 4)
        except OSError:
            msg, fds = b"", []
        if not msg and not fds:
            break
        try:
            if not k.apply(msg, fds):
                return 0
        except (ValueError, KeyError, TypeError) as e:
            log.warning("bad message from the agent (%s): ignored", e)
    ch.close()
    if k.listen_fd < 0:
        return 0
    log.warning("the agent died: handing %d listeners to a new one", len(k.held))
    from pylxcfs.sysinfo.agent import spawn_successor

    while True:
        pid = spawn_successor(args.socket, cfg, k.listen_fd, k.lock_fd, k.items())
        if pid is not None:
            log.info("agent %d took over", pid)
            return 0
        log.error("no new agent: the kernel answers sysinfo for %.0f s, then another try", RETRY_S)
        k.continue_all(RETRY_S)


if __name__ == "__main__":
    sys.exit(main())
