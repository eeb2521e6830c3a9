"""Values in a stranger's lab.yaml that would run commands in the machines (issue 10, item 4): read by
DevStack's own inc/meta-config (from ../shared/mirrors), they are plain text, or refused in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result
from devstack_meta import devstack_reads, devstack_source
from labctl.catalog import Catalog
from labctl.labfile import lab_from_dict
from labctl.render import render_local_conf

PASSWORDS = {"admin": "Adm1n", "database": "Db2", "rabbit": "Rb3", "service": "Sv4"}

# name -> value, each meant to run `touch CANARY` when DevStack reads the local.conf.
LOCALRC = {
    "A": "a[$(touch canary-arith)]",
    "B": "${HOME:A}",           # substring offset: arithmetic on A, whose subscript runs a command
    "P": "$(touch canary-p)",
    "Q": "${P@P}",              # prompt expansion of P
    "R": "$[$(touch canary-old-arith)]",
    "S": "`touch canary-backquote`",
    "T": "$((1+$(touch canary-arith2)))",
    "U": "${X:-$(touch canary-default)}",
    "V": "it's a $HOST_IP and ${HOST_IP}",
}


@pytest.fixture(scope="module")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return devstack_source(tmp_path_factory.mktemp("devstack"))


def test_localrc_values_reach_devstack_as_text(catalog: Catalog, devstack: Path, tmp_path: Path) -> None:
    lab = lab_from_dict({"name": "h", "network": {"cidr": "10.3.0.0/24"}, "machines": [{"name": "ks"}],
                         "devstack": {"localrc": LOCALRC}}, catalog)
    conf = render_local_conf(lab, lab.machines[0], PASSWORDS, [])
    variables, _, _ = devstack_reads("[[local|localrc]]\nHOST_IP=10.3.0.10\n" + conf.split("[[local|localrc]]\n")[1],
                                     devstack, tmp_path / "work")
    assert not list((tmp_path / "work").glob("canary*"))
    expected = {k: v for k, v in LOCALRC.items() if k != "V"}
    assert {k: variables[k] for k in expected} == expected
    # Plain $VAR and ${VAR} references keep working, as local.conf users expect.
    assert variables["V"] == "it's a 10.3.0.10 and 10.3.0.10"


@pytest.mark.parametrize(("devstack_yaml", "message"), [
    ("post_config: {$NOVA_CONF: {DEFAULT: {x: '$(touch canary)'}}}", "post_config"),
    ("post_config: {$NOVA_CONF: {DEFAULT: {x: '${HOME:$(touch canary)}'}}}", "post_config"),
    ("plugins: {evil: 'https://h/x;touch${IFS}canary;#'}", "devstack.plugins.evil.url"),
    ("plugins: {evil: 'https://h/x$(touch canary)'}", "devstack.plugins.evil.url"),
    ("plugins: {evil: {url: 'https://h/x', branch: 'a;b'}}", "devstack.plugins.evil.branch"),
    ("repo: 'https://h/x;$(touch canary)'", "devstack.repo"),
    ("git_base: 'https://h/$(touch canary)'", "devstack.git_base"),
])
def test_values_that_would_run_commands_are_refused(run: Callable[..., Result], tmp_path: Path, labctl_home: Path,
                                                    devstack_yaml: str, message: str) -> None:
    (tmp_path / "lab.yaml").write_text(f"name: h\nmachines:\n  - {{name: ks}}\ndevstack: {{{devstack_yaml}}}\n")
    result = run("plan", "-f", str(tmp_path / "lab.yaml"))
    assert result.code == 2, result.out
    assert message in result.err and "Traceback" not in result.err
    assert not (labctl_home / "labs" / "h").exists()


def test_post_config_references_still_expand(catalog: Catalog, devstack: Path, tmp_path: Path) -> None:
    lab = lab_from_dict({"name": "h", "network": {"cidr": "10.3.0.0/24"}, "machines": [{"name": "ks"}],
                         "devstack": {"post_config": {"$NOVA_CONF": {"DEFAULT": {"my_ip": "$HOST_IP",
                                                                                 "x": "a b; c"}}},
                                      "plugins": {"heat": "https://opendev.org/openstack/heat"}}}, catalog)
    conf = render_local_conf(lab, lab.machines[0], PASSWORDS, [])
    _, calls, written = devstack_reads(conf, devstack, tmp_path / "work")
    assert "my_ip = 10.3.0.10" not in written  # HOST_IP is not set in this reading: it expands to ""
    assert "x = a b; c" in written and "my_ip =" in written
    assert calls == ["enable_service openstack-cli-server", "enable_plugin heat https://opendev.org/openstack/heat"]
