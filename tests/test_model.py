from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labctl.catalog import Catalog
from labctl.errors import LabFileError
from labctl.labfile import default_cidr, lab_from_dict, load_lab, parse_disk, parse_memory


def lab(catalog: Catalog, **extra: Any) -> Any:
    raw = {"name": "t", "machines": [{"name": "m"}]}
    raw.update(extra)
    return lab_from_dict(raw, catalog)


def error_of(catalog: Catalog, raw: Any) -> str:
    with pytest.raises(LabFileError) as err:
        lab_from_dict(raw, catalog)
    return err.value.message


@pytest.mark.parametrize(("value", "mib"), [
    ("8G", 8192), ("8g", 8192), ("8GiB", 8192), ("8192M", 8192), ("8192", 8192), (8192, 8192),
    ("1024MB", 1024), (" 2G ", 2048),
])
def test_memory_forms(value: Any, mib: int) -> None:
    assert parse_memory(value, "m") == mib


@pytest.mark.parametrize("value", ["lots", "8X", "-1", "8.5G", True, None, [], "0", 100, "2T"])
def test_bad_memory_names_the_field(catalog: Catalog, value: Any) -> None:
    raw = {"name": "t", "machines": [{"name": "alpha"}, {"name": "bravo", "memory": value}]}
    assert error_of(catalog, raw).startswith("machines[1].memory:")


def test_disk_forms() -> None:
    assert parse_disk("40G", "d") == 40
    assert parse_disk(40, "d") == 40
    assert parse_disk("1T", "d") == 1024
    with pytest.raises(LabFileError, match="disk"):
        parse_disk("40M", "disk")


@pytest.mark.parametrize("name", [
    "Web", "1st", "a b", "a'b", 'a"b', "#{`id`}", "../etc", "a/b", "a_b", "a-", "", "x" * 64,
    "é", "a\nb", 7, None,
])
def test_hostile_names_are_rejected(catalog: Catalog, name: Any) -> None:
    assert "invalid name" in error_of(catalog, {"name": name, "machines": [{"name": "m"}]})
    assert "invalid name" in error_of(catalog, {"name": "ok", "machines": [{"name": name}]})


def test_defaults_apply_and_machines_override(catalog: Catalog) -> None:
    result = lab_from_dict({
        "name": "t", "defaults": {"distro": "ubuntu", "memory": "4G", "cpus": 2, "disk": "30G"},
        "machines": [{"name": "alpha"}, {"name": "bravo", "distro": "debian:13", "memory": 6144, "cpus": 3}],
    }, catalog)
    a, b = result.machines
    assert (a.release.ref, a.memory_mb, a.cpus, a.disk_gb) == ("ubuntu:24.04", 4096, 2, 30)
    assert (b.release.ref, b.memory_mb, b.cpus, b.disk_gb) == ("debian:13", 6144, 3, 30)


def test_count_numbers_machines_and_addresses(catalog: Catalog) -> None:
    result = lab_from_dict({
        "name": "class", "network": {"cidr": "10.20.0.0/24"},
        "machines": [{"name": "ctl", "role": "controller", "ip": "10.20.0.10"},
                     {"name": "cmp", "role": "compute", "count": 3}],
    }, catalog)
    assert [(m.name, m.ip, m.role) for m in result.machines] == [
        ("ctl", "10.20.0.10", "controller"), ("cmp-1", "10.20.0.11", "compute"),
        ("cmp-2", "10.20.0.12", "compute"), ("cmp-3", "10.20.0.13", "compute")]


def test_numbering_skips_fixed_addresses(catalog: Catalog) -> None:
    result = lab_from_dict({"name": "t", "network": {"cidr": "10.1.0.0/24"},
                            "machines": [{"name": "alpha"}, {"name": "bravo", "ip": "10.1.0.10"}]}, catalog)
    assert [m.ip for m in result.machines] == ["10.1.0.11", "10.1.0.10"]


@pytest.mark.parametrize(("raw", "message"), [
    ({"name": "t", "machines": [{"name": "alpha", "role": "controller"}, {"name": "bravo", "role": "controller"}]},
     "at most one controller"),
    ({"name": "t", "machines": [{"name": "c", "role": "controller", "count": 2}]}, "at most one controller"),
    ({"name": "t", "machines": [{"name": "alpha", "role": "compute"}]}, "need a controller"),
    ({"name": "t", "machines": [{"name": "alpha", "role": "boss"}]}, "machines[0].role: expected one of"),
    ({"name": "t", "machines": [{"name": "alpha"}, {"name": "alpha"}]}, "used twice"),
    ({"name": "t", "machines": [{"name": "alpha", "count": 2}, {"name": "alpha-1"}]}, "used twice"),
    ({"name": "t", "machines": []}, "at least one machine"),
    ({"machines": [{"name": "alpha"}]}, "name: a lab needs a name"),
    ({"name": "t", "machines": [{"name": "alpha", "cpu": 2}]}, "machines[0].cpu: unknown key"),
    ({"name": "t", "machine": []}, "machine: unknown key"),
    ({"name": "t", "machines": [{"name": "alpha", "distro": "arch"}]}, "machines[0].distro: unknown distro"),
    ({"name": "t", "machines": [{"name": "alpha", "ip": "10.9.9.9"}]}, "machines[0].ip: expected a free address"),
    ({"name": "t", "network": {"cidr": "10.0.0.0/24"}, "machines": [{"name": "alpha", "ip": "10.0.0.1"}]},
     "machines[0].ip"),
    ({"name": "t", "network": {"cidr": "10.0.0.0/24"},
      "machines": [{"name": "alpha", "ip": "10.0.0.5"}, {"name": "bravo", "ip": "10.0.0.5"}]}, "already used"),
    ({"name": "t", "network": {"cidr": "10.0.0.1/24"}, "machines": [{"name": "alpha"}]}, "network.cidr"),
    ({"name": "t", "network": {"cidr": "fd00::/64"}, "machines": [{"name": "alpha"}]}, "network.cidr"),
    ({"name": "t", "accelerator": "xen", "machines": [{"name": "alpha"}]}, "accelerator"),
    ({"name": "t", "machines": [{"name": "alpha", "count": 0}]}, "machines[0].count"),
    ({"name": "t", "machines": [{"name": "alpha", "cpus": "4"}]}, "machines[0].cpus"),
    (["not", "a", "mapping"], "expected a mapping"),
])
def test_invalid_labs(catalog: Catalog, raw: Any, message: str) -> None:
    assert message in error_of(catalog, raw)


def test_unknown_distro_lists_the_known_ones(catalog: Catalog) -> None:
    message = error_of(catalog, {"name": "t", "machines": [{"name": "alpha", "distro": "gentoo"}]})
    assert "debian:12" in message and "ubuntu:24.04" in message


@pytest.mark.parametrize(("devstack", "message"), [
    ({"repo": "https://x/y z"}, "devstack.repo"),
    ({"repo": "https://x/'y"}, "devstack.repo"),
    ({"branch": "-rf"}, "devstack.branch"),
    ({"branch": "a/../b"}, "devstack.branch"),
    ({"localrc": {"BAD-NAME": 1}}, "devstack.localrc.BAD-NAME"),
    ({"localrc": {"X": "a\n[[post-config|/etc/x]]"}}, "single line"),
    ({"localrc": {"HOST_IP": "1.2.3.4"}}, "labctl sets this variable"),
    ({"localrc": {"ADMIN_PASSWORD": "secret"}}, "labctl sets this variable"),
    ({"localrc": {"X": [1]}}, "expected a single value"),
    ({"post_config": {"nova.conf": {}}}, "$NOVA_CONF"),
    ({"post_config": {"$NOVA_CONF": {"DEF AULT": {"a": 1}}}}, "INI section"),
    ({"post_config": {"$NOVA_CONF": {"DEFAULT": {"a": 'x"; rm -rf /; "'}}}}, "quotes"),
    ({"post_config": {"$NOVA_CONF": {"DEFAULT": {"a": "x\ny"}}}}, "single line"),
    ({"enable_services": "heat"}, "devstack.enable_services: expected a list"),
    ({"enable_services": ["ok", "b a d"]}, "devstack.enable_services[1]"),
    ({"plugins": {"heat": "not a url"}}, "devstack.plugins.heat.url"),
    ({"plugins": {"heat": {"url": "https://x/heat", "tag": 1}}}, "devstack.plugins.heat.tag: unknown key"),
    ({"force": "yes"}, "devstack.force: expected true or false"),
    ({"repository": "x"}, "devstack.repository: unknown key"),
])
def test_invalid_devstack_block(catalog: Catalog, devstack: Any, message: str) -> None:
    assert message in error_of(catalog, {"name": "t", "machines": [{"name": "alpha"}], "devstack": devstack})


def test_devstack_block_is_read(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(
        "name: t\nmachines: [{name: alpha}]\ndevstack:\n  repo: ../devstack\n  branch: stable/2025.1\n"
        "  localrc: {SWIFT_HASH: abc, VERBOSE: true, N: 3}\n  force: true\n"
        "  post_config: {$NOVA_CONF: {DEFAULT: {debug: true}}}\n"
        "  enable_services: [tempest]\n  disable_services: [horizon]\n"
        "  plugins: {heat: 'https://opendev.org/openstack/heat', octavia: {url: 'https://o/o', branch: b}}\n")
    spec = load_lab(tmp_path / "lab.yaml", catalog).devstack
    assert spec.repo == str((tmp_path.parent / "devstack").resolve())
    assert spec.branch == "stable/2025.1" and spec.force
    assert spec.localrc == (("SWIFT_HASH", "abc"), ("VERBOSE", "True"), ("N", "3"))
    assert [(p.file, p.section, p.key, p.value) for p in spec.post_config] == [
        ("$NOVA_CONF", "DEFAULT", "debug", "True")]
    assert spec.enable_services == ("tempest",) and spec.disable_services == ("horizon",)
    assert [(p.name, p.url, p.branch) for p in spec.plugins] == [
        ("heat", "https://opendev.org/openstack/heat", None), ("octavia", "https://o/o", "b")]


def test_default_devstack_is_opendev_master(catalog: Catalog) -> None:
    spec = lab(catalog).devstack
    assert (spec.repo, spec.branch, spec.force) == ("https://opendev.org/openstack/devstack", "master", False)


def test_yaml_syntax_error_gives_the_line(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("name: t\nmachines:\n  - name: alpha\n    memory: [8G\n")
    with pytest.raises(LabFileError) as err:
        load_lab(path, catalog)
    assert "line 5" in err.value.message or "line 4" in err.value.message
    assert str(path) in err.value.message


def test_duplicate_keys_are_refused(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("name: t\nmachines: [{name: alpha}]\nname: u\n")
    with pytest.raises(LabFileError, match=r"line 3.*duplicate key 'name'"):
        load_lab(path, catalog)


def test_yaml_tags_are_not_executed(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("name: !!python/object/apply:os.system ['touch pwned']\nmachines: [{name: alpha}]\n")
    with pytest.raises(LabFileError):
        load_lab(path, catalog)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_default_cidr_is_stable_and_avoids_libvirt_networks() -> None:
    assert default_cidr("a") == default_cidr("a")
    for name in (f"lab{i}" for i in range(300)):
        assert default_cidr(name).split(".")[2] not in {"121", "122"}


@pytest.mark.parametrize("name", ["a", "b", "db", "cafe", "f00d", "a1"])
def test_hex_only_machine_names_are_refused(catalog: Catalog, name: str) -> None:
    # `vagrant up NAME` first takes NAME for the start of any known machine's id (seen in CI:
    # `vagrant up a` started another machine, whose id began with "a").
    message = error_of(catalog, {"name": "t", "machines": [{"name": name}]})
    assert "hexadecimal" in message and "another machine's id" in message
    counted = lab_from_dict({"name": "t", "machines": [{"name": name, "count": 2}]}, catalog)
    assert counted.machines[0].name == f"{name}-1"  # a '-' is no hexadecimal digit
