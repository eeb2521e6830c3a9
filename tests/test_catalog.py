from __future__ import annotations

from pathlib import Path

import pytest

from labctl.catalog import Catalog, default_catalog, load_catalog
from labctl.errors import CatalogError

# What the issue asks the catalogue to hold; DevStack master's SUPPORTED_DISTROS decides support.
EXPECTED = {
    "ubuntu:24.04": "noble", "ubuntu:22.04": "jammy", "ubuntu:26.04": "resolute",
    "debian:12": "bookworm", "debian:13": "trixie", "centos:9": "rhel9", "centos:10": "rhel10",
}
MASTER_SUPPORTED = {"trixie", "bookworm", "noble", "resolute", "rhel9", "rhel10"}


def test_catalogue_has_every_family_and_release(catalog: Catalog) -> None:
    refs = {r.ref: r for r in catalog.releases()}
    for ref, distro in EXPECTED.items():
        assert refs[ref].devstack_distro == distro
    assert {f.name for f in catalog.families} == {"ubuntu", "debian", "fedora", "centos", "opensuse"}
    assert any(r.family == "fedora" for r in refs.values())
    assert any(r.family == "opensuse" and r.version.startswith("15.") for r in refs.values())


def test_every_release_is_complete(catalog: Catalog) -> None:
    for r in catalog.releases():
        assert "/" in r.box and r.user
        assert r.package_family == {"ubuntu": "apt", "debian": "apt", "fedora": "dnf",
                                    "centos": "dnf", "opensuse": "zypper"}[r.family]
        assert r.min_memory_mb >= 4096 and r.min_disk_gb >= 10


def test_master_support_matches_devstack(catalog: Catalog) -> None:
    for r in catalog.releases():
        expected = "supported" if r.devstack_distro in MASTER_SUPPORTED else "unsupported"
        assert r.devstack_support("master") == expected, r.ref
    fedora = catalog.resolve("fedora")
    assert fedora.devstack_support("master") == "unsupported"
    assert fedora.devstack_support("stable/2023.1") == "unknown"


@pytest.mark.parametrize(("ref", "expected"), [
    ("debian", "debian:12"), ("debian:12", "debian:12"), ("debian:bookworm", "debian:12"),
    ("Debian:13", "debian:13"), ("ubuntu", "ubuntu:24.04"), ("ubuntu:jammy", "ubuntu:22.04"),
    ("centos:10", "centos:10"),
])
def test_resolve_forms(catalog: Catalog, ref: str, expected: str) -> None:
    assert catalog.resolve(ref).ref == expected


@pytest.mark.parametrize("ref", ["arch", "debian:11", "ubuntu-22.04", "", "  ", ":12"])
def test_unknown_distro_lists_known_ones(catalog: Catalog, ref: str) -> None:
    with pytest.raises(CatalogError) as err:
        catalog.resolve(ref)
    assert "known:" in err.value.message or "expected a distro" in err.value.message
    assert err.value.hint


def test_broken_catalogue_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("family: bad\npackage_family: apt\ndefault: '1'\nreleases:\n"
                                       "  - version: '1'\n    box: bad/box\n")
    with pytest.raises(CatalogError, match=r"bad.yaml: releases\[0\]: missing or bad field"):
        load_catalog(tmp_path)


PROOFS = {"built", "booted", "keystone-only", "classroom", "compute"}


def test_what_the_catalogue_says_is_proven_names_a_test_that_does_it() -> None:
    """`labctl boxes`' "proven here" is read from boxes/*.yaml: each claim must name a test file that
    exists and works on that very release (names it), so that the column cannot drift into a boast."""
    from conftest import REPO

    claims = [(r, kind, test) for r in default_catalog().releases() for kind, test in r.proven]
    assert any(r.ref == "debian:12" and kind == "keystone-only" for r, kind, _ in claims)
    for release, kind, test in claims:
        assert kind in PROOFS, (release.ref, kind)
        source = (REPO / test).read_text()
        assert release.ref in source, f"{test} does not name {release.ref}"
    # A release whose box only Vagrant's registry has (not reached from the test machine) proves nothing.
    for release in default_catalog().releases():
        if not release.local_build:
            assert not release.proven, release.ref


def test_the_readmes_distro_table_says_what_the_catalogue_proves() -> None:
    """Each release the catalogue calls proven has its row in the README's table, naming every test
    that proves it; the table claims no release the catalogue does not."""
    from conftest import REPO

    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0].split("`")[1]] = cells[2]
    proven = {r.ref: {test for _, test in r.proven} for r in default_catalog().releases() if r.proven}
    assert proven.keys() == {ref for ref, tests in rows.items() if tests}, rows
    for ref, tests in proven.items():
        assert {t.strip("` ") for t in rows[ref].split(",")} == tests, ref
