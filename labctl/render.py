"""Pure renderers: Lab -> Vagrantfile text; Lab x Machine -> local.conf text.

No I/O: templates and fragments come in as text. Every value that reaches the Vagrantfile goes
through `ruby_literal` (the Jinja environment's finalize), so no lab.yaml value can become Ruby code.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jinja2

from labctl import __version__
from labctl.classroom import networks as seat_networks
from labctl.devstack_libraries import libs_from_git
from labctl.errors import FragmentError, LabctlError
from labctl.host import Accelerator
from labctl.localconf import MetaConfig, parse, shell_value
from labctl.mirrors import git_base_url, project_url
from labctl.model import MANAGED_LOCALRC, ROLES, WORKTREE_BRANCH, Lab, Machine
from labctl.names import domain_name
from labctl.sandbox import render_untrusted

if TYPE_CHECKING:
    from labctl.hosts.transport import HostRoute

BUILTIN_SELECTORS = ("base", *ROLES)
USER_SELECTORS = ("all", *ROLES)
_RUBY_DQ = {"\\": "\\\\", '"': '\\"', "#": "\\#"}


def ruby_literal(value: object) -> str:
    """A Python value as a Ruby literal on one line.

    Strings are single-quoted, where Ruby interprets only \\\\ and \\' (so `#{...}` stays text).
    A string with control characters (a newline could end a comment and start code) is written
    double-quoted with every such character, `"`, `\\` and `#` escaped."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if all(" " <= c != "\x7f" for c in value):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return '"' + "".join(_RUBY_DQ.get(c) or (f"\\u{{{ord(c):x}}}" if c < " " or c == "\x7f" else c)
                             for c in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ruby_literal(v) for v in value) + "]"
    raise TypeError(f"no Ruby literal for {type(value).__name__}")


def domain_prefix(lab: Lab) -> str:
    return domain_name(lab.name, "")


def render_vagrantfile(template: str, lab: Lab, accel: Accelerator,
                       routes: Mapping[str, HostRoute] | None = None, straight: Mapping[str, str] | None = None) -> str:
    """`routes`: how to reach each host the machines are placed on (Machine.host), other than this one.
    `straight`: machines made from a stacked image, without a box -> the name of their disk's volume."""
    routes = routes or {}
    straight = straight or {}
    missing = sorted({m.host for m in lab.machines if m.host and m.host not in routes})
    if missing:
        raise LabctlError(f"no way to reach host {', '.join(missing)}: it is not in the host inventory",
                          hint="labctl hosts lists the hosts; add it to hosts.yaml")
    # Not HTML: escaping is ruby_literal's job, applied to every expression by `finalize`.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, finalize=ruby_literal,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)  # noqa: S701
    net = ipaddress.IPv4Network(lab.cidr)
    return env.from_string(template).render(
        lab=lab, machines=lab.machines, accel=accel, version=__version__, routes=routes,
        prefix=domain_prefix(lab), netmask=str(net.netmask),
        hostnames={m.name: seat_networks.hostname(lab.name, lab.classroom, m.name) for m in lab.machines},
        networks={m.name: seat_networks.network_of(lab.name, lab.classroom, m.name) for m in lab.machines},
        isolated={m.name: seat_networks.isolated(lab.classroom, m.name) for m in lab.machines},
        straight={m.name: straight.get(m.name, "") for m in lab.machines},
        # Under software emulation a first boot takes minutes, not seconds.
        boot_timeout=900 if accel.slow else 300,
    )


@dataclass(frozen=True)
class Fragment:
    """One local.conf.d file: `selector` is base/all, a role, or a machine name."""

    origin: str
    selector: str
    text: str
    builtin: bool

    def applies_to(self, machine: Machine) -> bool:
        return self.selector in ("base", "all", machine.role, machine.name)


def fragment_selector(filename: str) -> str:
    """`compute.conf` and `compute.ceph.conf` both select computes."""
    return filename.split(".", 1)[0]


def check_fragments(fragments: Sequence[Fragment], lab: Lab) -> None:
    names = {m.name for m in lab.machines}
    for frag in fragments:
        if frag.builtin:
            continue
        if frag.selector not in USER_SELECTORS and frag.selector not in names:
            raise FragmentError(
                f"{frag.origin}: its name selects {frag.selector!r}, which is no role or machine of"
                f" lab {lab.name!r}",
                hint=f"name fragments after what they apply to: {', '.join(USER_SELECTORS)}, or a"
                     f" machine name ({', '.join(sorted(names))})")


def _machine_data(m: Machine) -> dict[str, object]:
    return {"name": m.name, "role": m.role, "ip": m.ip, "memory_mb": m.memory_mb, "cpus": m.cpus,
            "disk_gb": m.disk_gb, "distro": m.release.ref, "family": m.release.family, "box": m.box}


def fragment_context(lab: Lab, machine: Machine, passwords: Mapping[str, str]) -> dict[str, object]:
    """What a fragment sees: plain data only (fragments come from strangers, see sandbox.py)."""
    spec = lab.devstack
    return {
        "lab": {"name": lab.name, "cidr": lab.cidr, "machines": [_machine_data(m) for m in lab.machines],
                "nested": lab.nested},
        "machine": _machine_data(machine),
        "controller": _machine_data(lab.controller) if lab.controller else None,
        "passwords": dict(passwords),
        "devstack": {"repo": spec.repo, "branch": spec.branch, "force": spec.force, "git_base": git_base_url(lab)},
    }


# A variable labctl manages, named other than as a $VAR reference (an assignment, export, readonly...).
_MANAGED_NAME_RE = re.compile(r"(?<![$\w{])(" + "|".join(MANAGED_LOCALRC) + r")(?!\w)")


def _refuse_managed(conf: MetaConfig, origin: str) -> None:
    """A lab's fragment may not set what labctl sets (addresses, passwords): `creds` would print a
    password that is not the lab's, and the real one would go unmasked."""
    for kind, text in conf.lines:
        name = text if kind == "var" else (m[1] if (m := _MANAGED_NAME_RE.search(text)) else None)
        if name in MANAGED_LOCALRC:
            raise FragmentError(f"{origin}: sets {name}, which labctl sets itself", hint=MANAGED_LOCALRC[name])


def compose_local_conf(lab: Lab, machine: Machine, passwords: Mapping[str, str],
                       fragments: Sequence[Fragment], slow: bool = False) -> MetaConfig:
    """Built-in fragments (base, then the role's), the user's (all, role, machine), then lab.yaml;
    under software emulation (`slow`), raised service waits first, so that any of those decides."""
    context = fragment_context(lab, machine, passwords)
    order = {"base": 0, "all": 0, machine.role: 1, machine.name: 2}
    chosen = sorted((f for f in fragments if f.applies_to(machine)),
                    key=lambda f: (not f.builtin, order.get(f.selector, 2), f.origin))
    conf = MetaConfig()
    for name, value in SLOW_WAITS if slow else ():
        conf.set_var(name, value)
    for frag in chosen:
        part = parse(render_untrusted(frag.text, context, frag.origin), frag.origin)
        if not frag.builtin:
            _refuse_managed(part, frag.origin)
        conf.merge(part)
    spec = lab.devstack
    git_base = git_base_url(lab)
    if git_base:
        conf.set_var("GIT_BASE", shell_value(git_base))
    for name, value in spec.localrc:
        conf.set_var(name, shell_value(value))
    _set_projects(conf, lab)
    if spec.force:
        # stack.sh refuses distros outside SUPPORTED_DISTROS unless FORCE=yes; only when asked.
        conf.set_var("FORCE", "yes")
    if machine.role != "compute":
        # Services and plugins are the lab's API side; computes run only compute services.
        if not _names_service(conf, spec.enable_services + spec.disable_services, CLI_SERVER):
            conf.add_command(f"enable_service {CLI_SERVER}")
        if spec.enable_services:
            conf.add_command("enable_service " + " ".join(spec.enable_services))
        if spec.disable_services:
            conf.add_command("disable_service " + " ".join(spec.disable_services))
        for plugin in spec.plugins:
            conf.add_command(" ".join(filter(None, ("enable_plugin", plugin.name, plugin.url,
                                                    plugin.branch))))
    for item in spec.post_config:
        conf.set_option("post-config", item.file, item.section, item.key, item.value)
    return conf


def _set_projects(conf: MetaConfig, lab: Lab) -> None:
    """The developer's checkouts, their working trees (labctl.devloop): each one's <NAME>_REPO and
    <NAME>_BRANCH, and a library also named in LIBS_FROM_GIT (else DevStack installs it from PyPI)."""
    for project in lab.devstack.projects:
        conf.set_var(project.variable("REPO"), shell_value(project_url(lab, project.checkout)))
        conf.set_var(project.variable("BRANCH"), WORKTREE_BRANCH)
    named = libs_from_git(conf.variables.get("LIBS_FROM_GIT", ""))  # ALL: every library
    missing = [p.name for p in lab.devstack.projects if p.library and p.name not in named]
    if missing:
        conf.set_var("LIBS_FROM_GIT", shell_value(",".join(named + missing)))


# DevStack's openstack-cli-server: one Python process that runs stack.sh's `openstack` calls, instead of
# a new client process for each (its base CI job enables it). Each client process costs about 30 s
# under software emulation: 38 calls took 1135 s of a keystone-only stack here (DevStack's "osc"
# timing in ../shared/devstack-logs/). Enabled on the API side unless the lab names it anywhere
# (ENABLED_SERVICES, enable_service or disable_service in a fragment, devstack.disable_services).
CLI_SERVER = "openstack-cli-server"


def _names_service(conf: MetaConfig, listed: Sequence[str], service: str) -> bool:
    """Whether the lab's own local.conf (fragments, localrc) or lab.yaml's service lists name `service`."""
    words = re.compile(rf"(?<![\w-]){re.escape(service)}(?![\w-])")
    texts = [conf.variables[t] if kind == "var" else t for kind, t in conf.lines]
    return service in listed or any(words.search(text) for text in texts)


# DevStack's waits for its services, as labctl raises them under software emulation: stackrc's 60 s
# for a service to answer is a fast machine's figure (a real keystone-only stack here on a slow day
# failed "keystone did not start" at 60 s). NOVA_READY_TIMEOUT follows SERVICE_TIMEOUT; a port's
# plugging waits on OVN. Only defaults: a lab's fragment or devstack.localrc still decides.
SLOW_WAITS = (("SERVICE_TIMEOUT", "600"), ("VIF_PLUGGING_TIMEOUT", "900"))


def slow_waits_note(lab: Lab, slow: bool) -> str | None:
    """What the plan says when labctl raised DevStack's waits (None when it did not)."""
    if not slow:
        return None
    own = {name for name, _ in lab.devstack.localrc}
    raised = [f"{n}={v}" for n, v in SLOW_WAITS if n not in own]
    return (f"software emulation: DevStack's service waits raised to {', '.join(raised)} (seconds; a fragment"
            " or devstack.localrc sets them otherwise)") if raised else None


def render_local_conf(lab: Lab, machine: Machine, passwords: Mapping[str, str],
                      fragments: Sequence[Fragment], slow: bool = False) -> str:
    header = (f"# local.conf of machine {machine.name} ({machine.role}) in lab {lab.name},"
              f" written by labctl {__version__}.\n"
              "# Edit lab.yaml or local.conf.d/ and run `labctl plan` again rather than this file.\n")
    return compose_local_conf(lab, machine, passwords, fragments, slow).render(header)
