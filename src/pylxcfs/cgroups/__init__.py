"""cgroup access by meaning (memory limit, swap limit, ...) over v1 and v2 files, through paths the resolver
built from a HostRoot. No rendering here."""
