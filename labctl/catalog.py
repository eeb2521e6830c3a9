"""The box catalogue: boxes/*.yaml -> Distro families and their Releases."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from labctl.errors import CatalogError, show
from labctl.resources import data_path

MASTER = "master"
PACKAGE_FAMILIES = ("apt", "dnf", "zypper")
BOX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?\Z")


@dataclass(frozen=True)
class Release:
    family: str
    family_name: str
    version: str
    codename: str
    box: str
    user: str
    package_family: str
    min_memory_mb: int
    min_disk_gb: int
    devstack_distro: str
    devstack_branches: tuple[str, ...]
    local_build: bool = False
    note: str = ""
    # What labctl's own tests have done with it on their machine (a Debian 12 host, no KVM, no box
    # registry): kind (built, booted, keystone-only, classroom, compute) -> the test that does it.
    proven: tuple[tuple[str, str], ...] = ()

    @property
    def ref(self) -> str:
        """The canonical way to name this release: family:version."""
        return f"{self.family}:{self.version}"

    def devstack_support(self, branch: str) -> str:
        """'supported', 'unsupported' (known to be refused) or 'unknown' for a DevStack branch."""
        if branch in self.devstack_branches:
            return "supported"
        if branch == MASTER:
            return "unsupported"
        return "unknown"


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    default: str
    releases: tuple[Release, ...]

    def release(self, version: str) -> Release | None:
        for release in self.releases:
            if version in (release.version, release.codename):
                return release
        return None


@dataclass(frozen=True)
class Catalog:
    families: tuple[Family, ...]

    def releases(self) -> list[Release]:
        return [r for f in self.families for r in f.releases]

    def resolve(self, ref: object) -> Release:
        """'debian' (the family's default), 'debian:12' or 'debian:bookworm' -> a Release."""
        if not isinstance(ref, str) or not ref.strip():
            raise CatalogError(f"expected a distro like 'debian' or 'debian:12', got {show(ref)}",
                               hint="labctl boxes lists the known distros")
        family_name, _, version = ref.strip().lower().partition(":")
        family = next((f for f in self.families if f.name == family_name), None)
        if family is None:
            raise CatalogError(f"unknown distro {show(ref)}; known: {', '.join(self.known())}",
                               hint="labctl boxes lists every release")
        release = family.release(version or family.default)
        if release is None:
            versions = ", ".join(r.ref for r in family.releases)
            raise CatalogError(f"unknown {family.title} release {show(ref)}; known: {versions}",
                               hint="labctl boxes lists every release")
        return release

    def known(self) -> list[str]:
        return [f.name for f in self.families] + [r.ref for r in self.releases()]


def _release(family: str, title: str, package_family: str, raw: object, where: str) -> Release:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping")
    try:
        devstack = raw["devstack"]
        release = Release(
            family=family, family_name=title, version=str(raw["version"]),
            codename=str(raw["codename"]), box=str(raw["box"]), user=str(raw["user"]),
            package_family=package_family, min_memory_mb=int(raw["min_memory_mb"]),
            min_disk_gb=int(raw["min_disk_gb"]), devstack_distro=str(devstack["distro"]),
            devstack_branches=tuple(str(b) for b in devstack.get("branches") or ()),
            local_build=bool(raw.get("local_build", False)), note=str(raw.get("note", "")),
            proven=tuple((str(k), str(v)) for k, v in (raw.get("proven") or {}).items()),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CatalogError(f"{where}: missing or bad field {exc}") from None
    if not BOX_RE.match(release.box):
        raise CatalogError(f"{where}: box name {show(release.box)} is not of the form owner/name")
    return release


def load_family(path: Path) -> Family:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = path.name
    if not isinstance(raw, dict) or not isinstance(raw.get("releases"), list):
        raise CatalogError(f"{where}: expected 'family', 'default' and a list of 'releases'")
    name, package_family = str(raw.get("family", "")), str(raw.get("package_family", ""))
    if package_family not in PACKAGE_FAMILIES:
        raise CatalogError(f"{where}: package_family must be one of {', '.join(PACKAGE_FAMILIES)}")
    title = str(raw.get("name", name))
    releases = tuple(_release(name, title, package_family, r, f"{where}: releases[{i}]")
                     for i, r in enumerate(raw["releases"]))
    family = Family(name=name, title=title, default=str(raw.get("default", "")), releases=releases)
    if family.release(family.default) is None:
        raise CatalogError(f"{where}: default release {show(family.default)} is not among its releases")
    return family


def load_catalog(folder: Path) -> Catalog:
    return Catalog(tuple(load_family(p) for p in sorted(folder.glob("*.yaml"))))


@cache
def default_catalog() -> Catalog:
    return load_catalog(data_path("boxes"))
