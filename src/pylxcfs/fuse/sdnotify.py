"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (READY=1, RELOADING=1, STOPPING=1).

Role: readiness reporting for `Type=notify` units (contrib/systemd/pylxcfs.service). A no-op when
NOTIFY_SOCKET is unset (no systemd, or a foreground run in a terminal).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def sd_notify(state: str) -> bool:
    """Send `state` to the service manager; True if it was sent. An '@' address is abstract."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as e:
        log.warning("sd_notify(%r) to %s failed: %s", state, addr, e)
        return False
    return True
