"""/proc/pressure/{cpu,memory,io} for a container: the pressure stall information of its cgroup2 group.

Role: the render module behind the registry's proc/pressure/* rows (one module, the resource is the row's
parameter: `produce_resource(env, ctx, "cpu")` etc.).

Rule: the container's group in the cgroup2 hierarchy (ContainerContext.unified: the "0::" line of its init,
init.scope pruned as for every controller) has <resource>.pressure, in the same format as the host file
(Documentation/accounting/psi.rst); we parse it and print it back in the kernel's layout, so a malformed file
is never passed on (it gets the host file, with one warning). This works on pure v2 and on hybrid hosts, whose
"unified" mount carries PSI for every group without any controller (LXCFS 7.0 serves these files on pure v2
only, and its io lookup never finds the group there).

The host's own file is served, by this module and on purpose (no warning), when the container has no cgroup2
group (pure v1 host), or its group has no pressure file (PSI off, or switched off for that group through
cgroup.pressure). A caller on the host gets the host file (service.py). Where the host itself has no
/proc/pressure/<resource> the daemon does not offer the file at all (registry row marked host_optional), so
the toolkit finds nothing to mount over a file the container does not have.
"""

from __future__ import annotations

from pylxcfs.cgroups.pressure import pressure
from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.parse.pressure import Pressure, format_pressure
from pylxcfs.views.readers import reader

__all__ = ["produce_resource", "render_pressure"]


def render_pressure(p: Pressure) -> str:
    """The container's pressure file text. Pure."""
    return format_pressure(p)


def produce_resource(env: ViewEnv, ctx: ContainerContext, resource: str) -> str:
    """The caller's /proc/pressure/<resource> (context.py contract plus the row's parameter)."""
    read = reader(env)
    p = pressure(ctx.unified, resource, read) if ctx.unified is not None else None
    if p is None:
        return read(env.root.proc_path(f"pressure/{resource}")).decode()
    return render_pressure(p)
