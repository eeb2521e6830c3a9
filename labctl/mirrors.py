"""Where a lab's machines get DevStack and the repositories DevStack clones (its GIT_BASE).

`devstack.git_base` is a URL, passed through to DevStack, or a folder of git mirrors on the host laid
out as DevStack's GIT_BASE expects (`<folder>/openstack/<name>.git`, bare or not). A folder is served
to the machines by `git daemon` on the lab network's host address (gitserver.py), from a copy that
labctl keeps in its cache: one copy on the host serves every machine of every lab, and nothing is
fetched from the internet. `devstack.repo` may be a URL, a DevStack checkout on the host (pushed as
it is, uncommitted changes included), or a bare repository (served like the mirrors).

Only what is here decides the URLs: a pure function of the lab, so that local.conf can be rendered
before anything runs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabFileError

if TYPE_CHECKING:  # annotations only: `labctl status` (through ui.redact) needs no lab model
    from labctl.model import Lab

GIT_PORT = 9418
_SLUG = re.compile(r"[^a-z0-9]+")


_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^@/:]*)(?::[^@/]*)?@")


def redact(url: str) -> str:
    """A URL fit to print: a password or token in it replaced by ****."""
    def hide(m: re.Match[str]) -> str:
        return f"{m['scheme']}{m['user']}:****@" if ":" in m.group()[len(m['scheme']):] else f"{m['scheme']}****@"
    return _USERINFO.sub(hide, url)


def url_secrets(*urls: str | None) -> list[str]:
    """The passwords or tokens in URLs, for masking in logs: a password, or a user part long enough
    to be a token (not `git@`, whose masking would blot out every "git" of a log)."""
    out = []
    for url in urls:
        if url and (m := re.match(r"^[a-z][a-z0-9+.-]*://([^@/]*)@", url)):
            user, _, password = m[1].partition(":")
            out.append(password if password else user if len(user) >= 16 else "")
    return [s for s in out if len(s) >= 4]


def host_address(cidr: str) -> str:
    """The host's own address on a lab network: its first address (libvirt's bridge)."""
    return str(next(ipaddress.IPv4Network(cidr).hosts()))


def served_name(folder: Path) -> str:
    """The name a host folder is served under: readable, and distinct for distinct folders."""
    stem = folder.name[:-4] if folder.name.endswith(".git") else folder.name
    slug = _SLUG.sub("-", stem.lower()).strip("-")[:40] or "mirror"
    return f"{slug}-{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Served:
    """A host folder that git daemon serves: a folder of mirrors (tree) or one repository."""

    source: Path
    name: str
    tree: bool

    def url(self, cidr: str) -> str:
        return f"git://{host_address(cidr)}/{self.name}" + ("" if self.tree else ".git")


def is_git_dir(folder: Path) -> bool:
    try:
        return (folder / "HEAD").is_file() and (folder / "objects").is_dir()
    except OSError:  # unreadable (a git_base may name any folder): not a repository labctl can serve
        return False


def git_base_served(lab: Lab) -> Served | None:
    """The folder of mirrors `devstack.git_base` names, as served (None for a URL or no git_base)."""
    return _git_base(lab)


def _git_base(lab: Lab) -> Served | None:
    folder = lab.devstack.git_base_folder
    return Served(folder, served_name(folder), True) if folder else None


def git_base_url(lab: Lab) -> str | None:
    """GIT_BASE for the lab's local.conf: the URL given, or where labctl serves the folder."""
    served = _git_base(lab)
    return served.url(lab.cidr) if served else lab.devstack.git_base


@dataclass(frozen=True)
class DevstackSource:
    """How a machine gets DevStack: cloned from `url`, or pushed from the checkout `folder`."""

    url: str | None = None
    folder: Path | None = None


def devstack_source(lab: Lab) -> DevstackSource:
    repo = lab.devstack.repo
    folder = Path(repo)
    if not folder.is_absolute():
        return DevstackSource(url=repo)
    if (folder / "stack.sh").is_file():
        return DevstackSource(folder=folder)
    git_base = _git_base(lab)
    if not is_git_dir(folder) and not is_git_dir(folder / ".git"):
        if git_base and folder.parent.parent == git_base.source and not folder.exists():
            raise LabFileError(f"devstack.git_base: {git_base.source} has no {folder.parent.name}/{folder.name}",
                               hint="add a devstack mirror there, or set devstack.repo")
        raise LabFileError(f"devstack.repo: {folder} is neither a DevStack checkout (it has no stack.sh) nor a"
                           " git repository", hint="point devstack.repo at a DevStack clone, a bare mirror of"
                                                    " it, or a git URL")
    if git_base and folder.is_relative_to(git_base.source):
        return DevstackSource(url=f"{git_base.url(lab.cidr)}/{folder.relative_to(git_base.source).as_posix()}")
    return DevstackSource(url=Served(folder, served_name(folder), False).url(lab.cidr))


def project_served(checkout: Path) -> Served:
    """A developer's checkout (devstack.projects), served as one repository."""
    return Served(checkout, served_name(checkout), False)


def project_url(lab: Lab, checkout: Path) -> str:
    """Where the machines clone a developer's checkout from (its <NAME>_REPO)."""
    return project_served(checkout).url(lab.cidr)


def served_folders(lab: Lab) -> list[Served]:
    """The host folders the lab's machines clone from, to be served while they stack."""
    served = [s for s in [_git_base(lab)] if s]
    repo = Path(lab.devstack.repo)
    if repo.is_absolute() and not (repo / "stack.sh").is_file() and not any(
            repo.is_relative_to(s.source) for s in served):
        served.append(Served(repo, served_name(repo), False))
    served += [project_served(p.checkout) for p in lab.devstack.projects]
    return served


@dataclass(frozen=True)
class ServedMirror:
    """A host folder that labctl serves to the machines while they stack, and what DevStack takes it as
    (GIT_BASE, DevStack's own repository, a checkout's KEYSTONE_REPO...)."""

    folder: Path
    url: str
    repositories: int
    served_as: str


def served_as(lab: Lab) -> list[tuple[Served, str]]:
    """served_folders(lab), each with what DevStack takes it as."""
    roles = {p.checkout: ", ".join(q.variable("REPO") for q in lab.devstack.projects if q.checkout == p.checkout)
             for p in lab.devstack.projects}
    found = []
    for served in served_folders(lab):
        if served.tree:
            found.append((served, "GIT_BASE"))
        elif served.source in roles:
            found.append((served, roles[served.source]))
        else:
            found.append((served, "DevStack's repository"))
    return list({s.source: (s, role) for s, role in found}.values())  # a checkout two projects name, once

