"""Container tooling (design.md §2, §3.7): pure plans first (oci, mountinfo, plan), side effects last (apply, nsexec).

Only apply.py and nsexec.py change kernel state, and only through pylxcfs.syscalls.
"""
