"""`python -m pylxcfs`: the daemon's command line (same as the `pylxcfs` console script)."""

from pylxcfs.cli import main

raise SystemExit(main())
