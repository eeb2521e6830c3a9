"""The lab as labctl knows it: frozen values made from lab.yaml (labctl.labfile) or from flags.

A Lab holds its machines, its network, what DevStack stacks, and, for a classroom, its seats.
Nothing here reads a file or runs anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from labctl.catalog import Release
from labctl.cloud.spec import CloudSpec
from labctl.devstack_libraries import LIBRARIES, library_variable
from labctl.seating import Classroom

ROLES = ("allinone", "controller", "compute")
ACCELERATORS = ("auto", "kvm", "qemu")
DEFAULT_DEVSTACK_REPO = "https://opendev.org/openstack/devstack"
DEFAULT_DEVSTACK_BRANCH = "master"
DEFAULT_MEMORY_MB = 8192
DEFAULT_CPUS = 4
DEFAULT_DISK_GB = 40
FIRST_HOST_OFFSET = 10
# Variables labctl sets itself: a lab.yaml value would silently break the lab.
MANAGED_LOCALRC = {
    "HOST_IP": "labctl sets it to each machine's address; set machines[].ip instead",
    "SERVICE_HOST": "labctl points computes at the controller's address",
    "ADMIN_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
    "DATABASE_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
    "RABBIT_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
    "SERVICE_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
}


@dataclass(frozen=True)
class Plugin:
    name: str
    url: str
    branch: str | None = None


@dataclass(frozen=True)
class Project:
    """An OpenStack project the machines stack from the developer's own checkout on the host (its
    working tree as it is, uncommitted changes included), instead of from GIT_BASE."""

    name: str  # as DevStack names it: keystone, nova...
    checkout: Path

    @property
    def library(self) -> bool:
        """A library DevStack installs from git when LIBS_FROM_GIT names it (oslo.config), not a project
        whose services it runs."""
        return self.name in LIBRARIES

    def variable(self, what: str) -> str:
        """DevStack's variable for its repository or branch: KEYSTONE_REPO, KEYSTONE_BRANCH; a library's
        own (OSLOCFG_REPO for oslo.config)."""
        if self.library:
            return library_variable(self.name, what)
        return re.sub(r"[^A-Z0-9]", "_", self.name.upper()) + f"_{what}"


# The branch of labctl's served copy of a checkout that holds its working tree (labctl.devloop).
WORKTREE_BRANCH = "labctl-worktree"


@dataclass(frozen=True)
class PostConfig:
    file: str
    section: str
    key: str
    value: str


@dataclass(frozen=True)
class DevstackSpec:
    # A git URL, or an absolute folder on the host (a DevStack checkout, or a bare repository).
    repo: str = DEFAULT_DEVSTACK_REPO
    branch: str = DEFAULT_DEVSTACK_BRANCH
    force: bool = False
    localrc: tuple[tuple[str, str], ...] = ()
    post_config: tuple[PostConfig, ...] = ()
    enable_services: tuple[str, ...] = ()
    disable_services: tuple[str, ...] = ()
    plugins: tuple[Plugin, ...] = ()
    projects: tuple[Project, ...] = ()  # the developer's own checkouts (labctl.devloop)
    # DevStack's GIT_BASE: a URL, or an absolute folder of mirrors (<folder>/openstack/<name>.git)
    # that labctl serves to the machines. None: DevStack's own default (opendev.org).
    git_base: str | None = None
    # Build the machines' box with the packages stack.sh would install (labctl.devstack_packages).
    preinstall: bool = False

    @property
    def git_base_folder(self) -> Path | None:
        return Path(self.git_base) if self.git_base and Path(self.git_base).is_absolute() else None


@dataclass(frozen=True)
class Machine:
    name: str
    release: Release
    role: str
    memory_mb: int
    cpus: int
    disk_gb: int
    ip: str
    # The Vagrant box: the catalogue's unless lab.yaml names one, or `up` picks a locally built one.
    box: str = ""
    host: str | None = None  # the inventory host lab.yaml pins it to (labctl.hosts)

    def __post_init__(self) -> None:
        if not self.box:
            object.__setattr__(self, "box", self.release.box)

    @property
    def disk_filled_gb(self) -> int:
        """What its volume will really take: volumes are thin, and DevStack fills about the release's
        minimum, not a larger virtual size."""
        return min(self.disk_gb, self.release.min_disk_gb)


@dataclass(frozen=True)
class Proxy:
    """Proxy settings pushed into every machine before anything is downloaded."""

    http: str | None = None
    https: str | None = None
    no_proxy: str = ""

    @property
    def has_credentials(self) -> bool:
        """A user (and password) in a proxy URL: the files that hold it must not be world-readable."""
        return any(url and "@" in url.split("://", 1)[-1].split("/", 1)[0] for url in (self.http, self.https))


@dataclass(frozen=True)
class Lab:
    name: str
    machines: tuple[Machine, ...]
    cidr: str
    devstack: DevstackSpec = field(default_factory=DevstackSpec)
    accelerator: str = "auto"
    # The lab.yaml it came from (None for `--distro` labs) and its local.conf.d/ folder, if any.
    source: Path | None = None
    fragments_dir: Path | None = None
    # Extra CA certificates (files on the host) and proxies for the machines: corporate networks.
    ca_certificates: tuple[Path, ...] = ()
    proxy: Proxy | None = None
    # A classroom lab: one all-in-one machine per seat (machines named after the seats).
    classroom: Classroom | None = None
    # The host's package caches (labctl.cache): asked for in lab.yaml; a classroom uses them unless
    # it says `caches: false` (N seats would download everything N times).
    caches: bool = False
    # What the stacked cloud holds on day one (images, flavors, keypair, rules): labctl.cloud.
    cloud: CloudSpec = field(default_factory=CloudSpec)
    # KVM inside the machines (Nova's guests at full speed): only on a host with nested KVM.
    nested: bool = False

    @property
    def controller(self) -> Machine | None:
        return next((m for m in self.machines if m.role == "controller"), None)

    def machine(self, name: str) -> Machine | None:
        return next((m for m in self.machines if m.name == name), None)
