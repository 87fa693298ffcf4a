"""The FUSE front-ends: the raw kernel protocol (protocol, wire, supervisor) and the mfusepy adapter.

Only this package talks FUSE; only fuse/mfuse.py imports mfusepy. Everything here serves what
pylxcfs.service.Renderer renders and decides nothing about content.
"""
