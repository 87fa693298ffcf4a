"""Container tooling (design.md §2, §3.7): pure plans first (oci, plan, over pylxcfs.parse.mountinfo), side effects
last (apply, run in a pylxcfs.forkjob child).

Only apply.py changes kernel state, and only through pylxcfs.syscalls.
"""
