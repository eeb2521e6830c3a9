"""What a machine's stack depends on, so that an image is used only for the same stack, and a stale
one is named with why.

"The same thing" is: the box (name and version), labctl's own part in the guest, DevStack (its repo and
the commit of its branch, or a checkout's working tree, uncommitted changes included), the commit of
every repository stack.sh will clone (from the mirrors folder, or `git ls-remote` for URLs), each
plugin's, and the rendered local.conf with the machine's addresses and passwords taken out (they are
the machine's own: the image is made its own machine afterwards). Anything else different is a
different stack. Reading commits runs git on the host (never in a shell); the rest is pure.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError

if TYPE_CHECKING:
    from labctl.model import Lab

LS_REMOTE_TIMEOUT = 30
DEVSTACK_GIT_BASE = "https://opendev.org"  # DevStack's own GIT_BASE


@dataclass(frozen=True)
class StackKey:
    """Each part a stack depends on, by name ("box", "devstack", "repo openstack/keystone.git",
    "local.conf"...), and their digest: the image's name."""

    parts: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dict(sorted(self.parts.items()))).encode()).hexdigest()[:16]

    def differences(self, image: StackKey) -> list[str]:
        """Why an image made with key `image` is not this stack, one reason per part, in words."""
        out = []
        for name in sorted(set(self.parts) | set(image.parts)):
            was, now = image.parts.get(name), self.parts.get(name)
            if was == now:
                continue
            if name == "local.conf" and was is not None and now is not None:
                out.append(f"local.conf: {_line_changes(was, now)}")
            elif was is None:
                out.append(f"{name}: new ({_short(now)})")
            elif now is None:
                out.append(f"{name}: no longer used")
            else:
                out.append(f"{name}: {_short(was)} -> {_short(now)}")
        return out

    def as_json(self) -> dict[str, str]:
        return dict(sorted(self.parts.items()))


def _short(value: str | None) -> str:
    text = value or ""
    return text[:12] if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else text[:80]


def _line_changes(was: str, now: str) -> str:
    before, after = was.splitlines(), now.splitlines()
    gone = [line for line in before if line not in after]
    came = [line for line in after if line not in before]
    words = [f"-{line.strip()}" for line in gone[:3]] + [f"+{line.strip()}" for line in came[:3]]
    more = len(gone) + len(came) - len(words)
    return ", ".join(words) + (f" and {more} more" if more > 0 else "") if words else "the order of its lines"


def normalized_local_conf(text: str, secrets: Iterable[str], addresses: Iterable[str]) -> str:
    """local.conf with the machine's own values taken out: each password as <password>, each of its
    addresses as <address> (longest first, so that 10.0.0.10 is not half-replaced by 10.0.0.1), and
    its comment lines (labctl's header names the lab; a comment changes nothing stack.sh does)."""
    text = "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#"))
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(value, "<password>")
    for address in sorted({a for a in addresses if a}, key=len, reverse=True):
        text = _replace_address(text, address)
    return text


def _replace_address(text: str, address: str) -> str:
    """Each whole occurrence of an address (not inside a longer number)."""
    import re

    return re.sub(rf"(?<![0-9.]){re.escape(address)}(?![0-9])", "<address>", text)


def stack_key(*, box: str, box_version: str, guest: str, devstack: str, local_conf: str,
              commits: Mapping[str, str]) -> StackKey:
    """`devstack`: its repo and the state of its branch or working tree (devstack_state); `commits`:
    "openstack/keystone.git" (or a plugin's name) -> its commit; `guest`: labctl's own part (a
    digest of what it installs and runs in the guest)."""
    parts = {"box": f"{box} {box_version}".strip(), "labctl guest": guest, "devstack": devstack,
             "local.conf": local_conf}
    parts.update({f"repo {name}": commit for name, commit in commits.items()})
    return StackKey(parts)


# ---------------------------------------------------------------------------------------------
# Reading commits


class CommitUnknown(LabctlError):
    """A repository's commit cannot be read: no image can be chosen for it."""


def _git(argv: list[str], what: str, timeout: float = LS_REMOTE_TIMEOUT) -> str:
    """git's output (bytes it could not decode kept as surrogates); a repository owned by another
    user is read all the same (safe.directory: labctl only reads). It runs from / : labctl's own
    folder may sit in a stranger's repository, whose config git would otherwise read (core.sshCommand
    for an ssh URL)."""
    try:
        done = subprocess.run(["git", "-c", "safe.directory=*", *argv], capture_output=True, text=True, cwd="/",
                              errors="surrogateescape", timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                              env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                   "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommitUnknown(f"cannot read {what}: {exc}", hint="labctl up --fresh stacks without an image") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["git failed"])[-1][:200]
        raise CommitUnknown(f"cannot read {what}: {said}", hint="labctl up --fresh stacks without an image")
    return done.stdout


def branch_commit(source: str, branch: str) -> str:
    """The commit a branch points at: in a repository on the host (a folder), or by `git ls-remote`."""
    what = f"branch {branch} of {source}"
    if source.startswith("/"):
        git_dir = Path(_git_dir(Path(source)))
        found = _read_ref(git_dir, f"refs/heads/{branch}")
        if found is not None:  # read as written: a copied mirror may have lost its empty refs/ (gitserver.py)
            return found
        if not (git_dir / "refs").is_dir():
            raise CommitUnknown(f"cannot read {what}: it has no such branch",
                                hint="check the branch in lab.yaml; labctl up --fresh stacks without an image")
        from labctl.gitshadow import shadow_of

        with shadow_of(git_dir) as shadow:  # a stranger's folder: its config is never read
            return _git(["--git-dir", str(shadow), "rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"],
                        what).strip()
    out = _git(["ls-remote", "--", source, f"refs/heads/{branch}"], what)
    commit = out.split()[0] if out.split() else ""
    if len(commit) != 40:
        raise CommitUnknown(f"cannot read {what}: it has no such branch",
                            hint="check the branch in lab.yaml; labctl up --fresh stacks without an image")
    return commit


def _read_ref(git_dir: Path, ref: str) -> str | None:
    """A branch's commit from its loose ref or packed-refs (None when neither names it)."""
    import re

    sha = re.compile(r"[0-9a-f]{40}")
    try:
        loose = (git_dir / ref).read_text().strip()
        if sha.fullmatch(loose):
            return loose
    except (OSError, ValueError):
        pass
    try:
        lines = (git_dir / "packed-refs").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        commit, _, name = line.partition(" ")
        if name.strip() == ref and sha.fullmatch(commit):
            return commit
    return None


def _git_dir(folder: Path) -> str:
    return str(folder / ".git") if (folder / ".git").exists() else str(folder)


def image_lab(lab: Lab) -> bool:
    """Whether `up` of this lab uses and keeps stacked images: one all-in-one machine on this host, no
    classroom (a class stacks seat-01 and clones it; several machines stack together)."""
    return (lab.classroom is None and len(lab.machines) == 1 and lab.machines[0].role == "allinone"
            and not lab.machines[0].host)


def class_image_lab(lab: Lab) -> bool:
    """Whether `up` of this classroom makes its template, seat-01, from a stacked image and keeps one:
    a class that clones (labctl.stacking.class_images), seat-01 on this host."""
    return bool(lab.classroom is not None and lab.classroom.clone and len(lab.machines) > 1
                and not lab.machines[0].host)


def kept_image_gb(lab: Lab) -> int:
    """The disk the stacked image `up` keeps of the lab's machine (a class's seat-01) may take (its disk,
    flattened: up to what DevStack fills); 0 when the lab keeps none."""
    return lab.machines[0].disk_filled_gb if image_lab(lab) or class_image_lab(lab) else 0


def worktree_state(checkout: Path) -> str:
    """A checkout on the host (DevStack's, or a developer's project), as it is pushed or served:
    its HEAD, and its working tree's id when it differs (labctl.devloop.worktree.state, which never
    reads the checkout's own git config)."""
    from labctl.devloop.worktree import WorktreeError, state

    try:
        return state(checkout)
    except WorktreeError as exc:
        raise CommitUnknown(exc.message, hint=exc.hint) from None


def prefix_of(project: str) -> str:
    """The prefix of DevStack's variables for a project or library: KEYSTONE, OSLOCFG (oslo.config);
    the model's own rule (Project.variable), not a second one."""
    from labctl.model import Project

    return Project(project, Path()).variable("").removesuffix("_")


def branch_of(project: str, localrc: Mapping[str, str], default: str) -> str:
    """The branch stack.sh checks out for a project: its <NAME>_BRANCH when local.conf sets one, else
    DevStack's own (its TARGET_BRANCH: the branch DevStack was checked out at)."""
    return localrc.get(prefix_of(project) + "_BRANCH") or default


def repo_commits(lab: Lab, local_conf: str) -> dict[str, str]:
    """Every repository stack.sh will clone for this local.conf ("openstack/keystone.git" -> its
    commit, from its <NAME>_REPO, the mirrors folder or its URL): its services' projects and the
    libraries LIBS_FROM_GIT names; and each plugin's ("plugin NAME")."""
    from labctl.devstack_libraries import LIBRARIES, libs_from_git
    from labctl.devstack_services import enabled_services, repositories_needed
    from labctl.localconf import parse

    conf = parse(local_conf, "local.conf")
    localrc = {k: v.strip("'\"") for k, v in conf.variables.items()}
    folder = lab.devstack.git_base_folder
    base = (lab.devstack.git_base or DEVSTACK_GIT_BASE).rstrip("/")
    wanted = {repo: repo.rsplit("/", 1)[-1].removesuffix(".git")
              for repo in repositories_needed(enabled_services(conf))}
    wanted |= {f"openstack/{name}.git": name for name in libs_from_git(localrc.get("LIBS_FROM_GIT", ""))
               if name in LIBRARIES}
    commits = {}
    checkouts = {p.name: p.checkout for p in lab.devstack.projects}
    for repo, name in sorted(wanted.items()):
        if name in checkouts:  # the developer's checkout: its working tree, as it is served
            commits[repo] = f"{checkouts[name]} {worktree_state(checkouts[name])}"
            continue
        source = localrc.get(prefix_of(name) + "_REPO") or (str(folder / repo) if folder else f"{base}/{repo}")
        commits[repo] = branch_commit(source, branch_of(name, localrc, lab.devstack.branch))
    for plugin in lab.devstack.plugins:
        commits[f"plugin {plugin.name}"] = branch_commit(plugin.url, plugin.branch or "master")
    return commits


def devstack_state(lab: Lab) -> str:
    """DevStack as the machine gets it: a checkout's working tree (pushed as it is), or the commit of
    its branch in the repository or at the URL it is cloned from."""
    repo = lab.devstack.repo
    if repo.startswith("/") and (Path(repo) / "stack.sh").is_file():
        return f"{repo} {worktree_state(Path(repo))}"
    return f"{repo} {lab.devstack.branch} {branch_commit(repo, lab.devstack.branch)}"


# What labctl runs in a guest before and around stack.sh (its preparation, the caches' settings) and
# the machine's definition: a change to any of them is a different stack. (local.conf is a part of
# its own; the box's contents are its name and version.)
GUEST_FILES = ("provision.py", "devstack_source.py", "cache/guest.py")


def guest_digest() -> str:
    from labctl.resources import data_path

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in [root / name for name in GUEST_FILES] + [data_path("Vagrantfile.j2")]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def machine_key(lab: Lab, machine: str, local_conf: str, passwords: Iterable[str], origin: str) -> StackKey:
    """What machine `machine` of `lab` would stack with this local.conf (its rendered file), on a disk
    whose chain starts at the volume `origin` (its box's, named by box and version). Reads commits:
    CommitUnknown when one cannot be read."""
    from labctl.classroom.networks import hostname
    from labctl.devstack_services import enabled_services, host_bound
    from labctl.localconf import parse
    from labctl.mirrors import host_address

    ips = [m.ip for m in lab.machines if m.name == machine]
    conf = normalized_local_conf(local_conf, passwords, [*ips, host_address(lab.cidr)])
    key = stack_key(box=origin, box_version="", guest=guest_digest(), devstack=devstack_state(lab),
                    local_conf=conf, commits=repo_commits(lab, local_conf))
    bound = host_bound(enabled_services(parse(local_conf, "local.conf")))
    if not bound:
        return key
    # Nova, Neutron and OVN register the host by its name and address in their databases: a copy is
    # not renamed reliably (labctl.classroom.networks), so their image serves only that name and address.
    where = f"{hostname(lab.name, lab.classroom, machine)} {' '.join(ips)}"
    return StackKey({**key.parts, "host (its services remember it)": where})
