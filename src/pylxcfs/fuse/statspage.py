"""What the supervisor and its workers agree on: the worker's module name, its exit statuses, the stats page.

Role: the contract between fuse/supervisor.py and fuse/worker.py, in a module that imports nothing else, so the
supervisor keeps it without importing the worker's render stack (each import is private heap in a process that
never renders; see docs/design-fuse.md, "Memory").
"""

from __future__ import annotations

import struct

MODULE = "pylxcfs.fuse.worker"  # `python -m MODULE`: how adoption and the handle router recognise a worker
EXIT_CONNECTION_GONE = 10  # worker exit status: /dev/fuse said ENODEV (unmounted, aborted) or DESTROY came

# The stats page shared with the supervisor (a memfd it creates per worker): busy_since_ns (CLOCK_MONOTONIC,
# 0 = idle), unique, pid, opcode, requests answered, errors. Written by the worker only.
STATS = struct.Struct("=QQIIQQ")
STATS_SIZE = 4096
# Also on that page, the worker's progress: requests it took into its fair queue (from the device or forwarded to
# it) and requests it finished, both counted since it started. taken > finished with `finished` not moving for the
# request timeout, while no request is in progress, is a worker that holds requests and answers none (the supervisor
# replaces it).
PROGRESS_AT = 192
PROGRESS = struct.Struct("=QQ")
