"""What a newly started fd keeper is told by the sysinfo agent (agent.py `_sync_keeper`), read back through the
keeper's own state (keeper.py `Keeper`) over a real SOCK_SEQPACKET pair: the listeners, and the notifications the
agent holds at that moment. A notification received just before the old keeper died (its R message went to the
dead keeper) or while none ran (it went nowhere) must reach the new one, or a kill of the agent right after the
keeper's leaves its caller waiting for ever (the agent-and-keeper kill loop in tests/t4_sysinfo)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.sysinfo.agent import Agent, Listener, notif_from_dict
from pylxcfs.sysinfo.keeper import Keeper

NOTIF = {"id": 7, "pid": 4242, "arch": 0xC000003E, "nr": 99, "arg0": 0x7FFD0000}


def _drain(sock: socket.socket, k: Keeper) -> None:
    """Apply every message waiting on the keeper's end, as keeper.main does."""
    sock.setblocking(False)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
        except BlockingIOError:
            return
        k.apply(msg, fds)


def _new_keeper(agent: Agent) -> tuple[socket.socket, Keeper]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with agent._klock, agent.lock:
        agent.keeper = ours
        agent._sync_keeper(ours)
    k = Keeper()
    _drain(theirs, k)
    return theirs, k


def test_a_new_keeper_learns_the_notifications_the_agent_holds_and_forgets_answered_ones(tmp_path: Path) -> None:
    agent = Agent(str(tmp_path / "s.sock"), DaemonConfig())
    agent.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.lock_fd = os.open(tmp_path / "s.sock.pid", os.O_RDWR | os.O_CREAT, 0o600)
    r, w = os.pipe()  # stands for a listener fd: the keeper only holds it
    li = Listener(fd=r, cid="c1", init_pid=1)
    agent.listeners[r] = li
    n = notif_from_dict(NOTIF)
    try:
        agent._took(li, n)  # no keeper runs (the old one just died): the R message goes nowhere
        first, k1 = _new_keeper(agent)
        [(desc, _fd)] = k1.items()
        assert desc["cid"] == "c1"
        assert desc["pending"] == [NOTIF]  # the next agent would answer it first
        agent._done(li, n)
        _drain(first, k1)
        assert k1.items()[0][0]["pending"] == []
        second, k2 = _new_keeper(agent)  # answered: a keeper started now is not told of it
        assert k2.items()[0][0]["pending"] == []
        for s in (first, second):
            s.close()
        for k in (k1, k2):
            for _key, (fd, _d) in k.held.items():
                os.close(fd)
            for fd in (k.listen_fd, k.lock_fd):
                os.close(fd)
    finally:
        if agent.keeper is not None:
            agent.keeper.close()
        agent.sock.close()
        for fd in (agent.lock_fd, r, w):
            os.close(fd)
