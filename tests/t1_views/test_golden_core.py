"""Golden renders of the render-core views (meminfo, swaps, uptime, loadavg) on every fixture host, through the
production path: Renderer(HostRoot.from_dir(tree)).render(path, caller) with the real resolver."""

from __future__ import annotations

import pytest

from pylxcfs.hostfs import HostRoot
from pylxcfs.service import Renderer, ViewOptions

from .conftest import HOSTS, check_golden

CORE_HOSTS = ["x86_64-hybrid-debian12", "x86_64-unified-ubuntu22", "x86_64-legacy-centos7",
              "x86_64-legacy-noswapacct", "x86_64-unified-ancestorlimit", "x86_64-legacy-nomemavail"]
CORE_VIEWS = ["meminfo", "swaps", "uptime", "loadavg"]


@pytest.mark.parametrize("host", CORE_HOSTS)
@pytest.mark.parametrize("view", CORE_VIEWS)
def test_golden(host: str, view: str) -> None:
    r = Renderer(HostRoot.from_dir(HOSTS / host), ViewOptions(enable_loadavg=True))
    out = r.render(f"proc/{view}", 4243).decode()
    assert not r.fallbacks, r.fallbacks  # a golden must be a real render, not the host file
    check_golden(host, view, out)
