"""pylxcfs: per-container /proc views over FUSE, and the toolkit that mounts them into containers."""

__version__ = "0.1.0"
