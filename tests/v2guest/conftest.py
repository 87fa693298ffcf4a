"""The pure cgroup-v2 guest tests: one host-side test (test_v2guest.py) boots a QEMU guest through
tools/v2guest/run.py and runs the `inner/` session in it.

The inner tests only make sense on the guest's pure cgroup-v2 kernel, so on the host they are not collected at
all (rather than skipped: a skip would read as "checked"). The runner sets PYLXCFS_V2GUEST=1 in the guest; there
the host-side test is left out instead, so a guest never tries to boot another guest.
"""

from __future__ import annotations

import os

IN_GUEST = os.environ.get("PYLXCFS_V2GUEST") == "1"

collect_ignore = ["test_v2guest.py"] if IN_GUEST else ["inner"]
