"""Stacking decisions that need no machine: which machines to stack, proxies, credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl import records
from labctl.catalog import Catalog
from labctl.errors import LabctlError
from labctl.guest_network import proxy_files
from labctl.labfile import lab_from_dict
from labctl.machine_status import devstack_states
from labctl.model import Proxy
from labctl.passwords import LabSecrets, Passwords
from labctl.provision import StackResult, devstack_command
from labctl.records import mark
from labctl.stacking.machines import credentials, machines_to_stack, openrc, record
from labctl.state import LabDir


@pytest.fixture
def lab_dir(tmp_path: Path) -> LabDir:
    d = LabDir("t", tmp_path / "t")
    d.create()
    d.write_meta({"name": "t", "machines": [{"name": "ctl", "role": "controller", "ip": "10.0.0.10"},
                                            {"name": "cmp-1", "role": "compute", "ip": "10.0.0.11"},
                                            {"name": "cmp-2", "role": "compute", "ip": "10.0.0.12"}]})
    d.write_secrets(LabSecrets(Passwords("Adm1n", "Db", "Rb", "Sv"), {}))
    return d


def multinode(catalog: Catalog) -> object:
    return lab_from_dict({"name": "t", "network": {"cidr": "10.0.0.0/24"},
                          "machines": [{"name": "ctl", "role": "controller"},
                                       {"name": "cmp", "role": "compute", "count": 2}]}, catalog)


def test_retry_takes_failed_and_never_run(lab_dir: LabDir, catalog: Catalog) -> None:
    lab = multinode(catalog)
    assert [m.name for m in machines_to_stack(lab, lab_dir, [], False)] == ["ctl", "cmp-1", "cmp-2"]  # type: ignore[arg-type]
    record(lab_dir, [StackResult("ctl", "ok", 100, "Starting Horizon"),
                     StackResult("cmp-1", "failed", 50, "Starting Neutron", "boom"),
                     StackResult("cmp-2", "ok", 60)], "mapped cmp-2")
    assert [m.name for m in machines_to_stack(lab, lab_dir, [], False)] == ["cmp-1"]  # type: ignore[arg-type]
    assert [m.name for m in machines_to_stack(lab, lab_dir, [], True)] == ["ctl", "cmp-1", "cmp-2"]  # type: ignore[arg-type]
    assert [m.name for m in machines_to_stack(lab, lab_dir, ["cmp-2"], False)] == ["cmp-2"]  # type: ignore[arg-type]
    with pytest.raises(LabctlError, match="no machine named 'nope'"):
        machines_to_stack(lab, lab_dir, ["nope"], False)  # type: ignore[arg-type]
    state = json.loads(lab_dir.state_file.read_text())
    assert state["stack"]["cmp-1"]["phase"] == "Starting Neutron" and state["discover_hosts"] == "mapped cmp-2"
    assert "Adm1n" not in lab_dir.state_file.read_text()


def test_a_stack_in_progress_is_never_taken_for_done(lab_dir: LabDir, catalog: Catalog) -> None:
    """Machines being stacked are marked first: whatever happens to labctl then (SIGKILL included),
    they are not taken for stacked, `status` tells an interrupted run from a running one, and a
    machine created anew forgets its predecessor's DevStack."""
    import subprocess
    import sys

    lab = multinode(catalog)
    record(lab_dir, [StackResult("ctl", "ok", 100), StackResult("cmp-1", "ok", 50), StackResult("cmp-2", "ok", 60)])
    mark(lab_dir, ["ctl", "cmp-1"], "started")  # this process: a labctl that is still running
    assert devstack_states(lab_dir) == {"ctl": "stacking", "cmp-1": "stacking", "cmp-2": "stacked"}
    assert [m.name for m in machines_to_stack(lab, lab_dir, [], False)] == ["ctl", "cmp-1"]  # type: ignore[arg-type]
    record(lab_dir, [StackResult("ctl", "failed", 10, "Starting Keystone [x]")])
    mark(lab_dir, ["ctl", "cmp-1"], "interrupted")  # only what had not finished
    assert devstack_states(lab_dir) == {"ctl": "failed at Starting Keystone [x]", "cmp-1": "interrupted",
                                        "cmp-2": "stacked"}

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    mark(lab_dir, ["cmp-2"], "started")
    state = json.loads(lab_dir.state_file.read_text())
    state["stack"]["cmp-2"]["pid"] = gone.pid  # a labctl that was SIGKILLed: its pid is gone
    lab_dir.write_state(state)
    assert devstack_states(lab_dir)["cmp-2"] == "interrupted"

    records.forget(lab_dir, ["ctl", "cmp-2"])
    assert devstack_states(lab_dir) == {"cmp-1": "interrupted"}
    assert [m.name for m in machines_to_stack(lab, lab_dir, [], False)] == ["ctl", "cmp-1", "cmp-2"]  # type: ignore[arg-type]


def test_damaged_state_is_reported(lab_dir: LabDir) -> None:
    lab_dir.state_file.write_text("{not json")
    with pytest.raises(LabctlError, match=r"state\.json is damaged") as err:
        lab_dir.read_state()
    assert err.value.hint and "delete it" in err.value.hint


def test_credentials_and_openrc(lab_dir: LabDir) -> None:
    creds = credentials(lab_dir)
    assert creds.password == "Adm1n" and list(creds.machines) == ["ctl"]  # computes have no Keystone
    assert creds.machines["ctl"].auth_url == "http://10.0.0.10/identity"
    rc = openrc(creds, "ctl")
    assert "export OS_AUTH_URL=http://10.0.0.10/identity\n" in rc and "export OS_PASSWORD=Adm1n\n" in rc
    assert "export OS_IDENTITY_API_VERSION=3\n" in rc


def test_proxy_files_per_family() -> None:
    proxy = Proxy("http://p.example:3128", "http://p.example:3128", "corp.example")
    apt = proxy_files("apt", proxy, ["10.0.0.10"])
    assert apt["/etc/apt/apt.conf.d/95labctl-proxy"] == ('Acquire::http::Proxy "http://p.example:3128";\n'
                                                         'Acquire::https::Proxy "http://p.example:3128";\n')
    profile = apt["/etc/profile.d/labctl-proxy.sh"]
    assert "export no_proxy=corp.example,localhost,127.0.0.1,10.0.0.10\n" in profile
    assert "env_keep" in apt["/etc/sudoers.d/labctl-proxy"] and "proxy = " in apt["/etc/pip.conf"]
    assert "/etc/sysconfig/proxy" in proxy_files("zypper", proxy, [])
    assert not any("apt" in p for p in proxy_files("dnf", proxy, []))


def test_devstack_command_runs_as_stack() -> None:
    assert devstack_command("./stack.sh", False) == (
        "sudo -u stack -H bash -l -c 'cd /opt/stack/devstack && exec ./stack.sh'")
    assert "env FORCE=yes" in devstack_command("./stack.sh", True)


@pytest.mark.parametrize(("proxy", "message"), [
    ({"http": "ftp://x"}, "proxy.http"), ({"http": "http://a b"}, "proxy.http"),
    ({"http": "http://x;id"}, "proxy.http"), ({}, "give http, https or both"),
    ({"http": "http://x", "no_proxy": "a b"}, "proxy.no_proxy"), ({"https": "http://x", "ftp": "y"}, "proxy.ftp"),
])
def test_bad_proxy(catalog: Catalog, proxy: dict[str, str], message: str) -> None:
    from labctl.errors import LabFileError

    with pytest.raises(LabFileError, match=message.replace(".", r"\.")):
        lab_from_dict({"name": "t", "machines": [{"name": "alpha"}], "proxy": proxy}, catalog)


def test_bad_certificates(catalog: Catalog, tmp_path: Path) -> None:
    from labctl.errors import LabFileError

    (tmp_path / "not.pem").write_text("hello")
    for value, message in ((str(tmp_path / "missing.crt"), "no such PEM certificate file"),
                           (str(tmp_path / "not.pem"), "no PEM"), (3, "expected the path")):
        with pytest.raises(LabFileError, match=message):
            lab_from_dict({"name": "t", "machines": [{"name": "alpha"}], "ca_certificates": [value]}, catalog)


def test_phase_durations_are_kept_and_status_shows_the_slowest(lab_dir: LabDir) -> None:
    from labctl.adapters.hypervisor import Hypervisor
    from labctl.machine_status import lab_status

    phases = [("starting", 180.0), ("Installing package prerequisites", 560.5),
              ("Installing OpenStack project source", 470.0), ("Starting Keystone", 610.0)]
    record(lab_dir, [StackResult("ctl", "ok", 1820, "Starting Keystone", phases=phases)])
    with Hypervisor("test:///default") as hv:  # no such domains there: "not created", DevStack from the records
        ctl = next(s for s in lab_status(lab_dir, hv) if s.name == "ctl").as_json()
    assert ctl["devstack"] == "stacked"
    assert ctl["devstack_phases"] == [{"phase": p, "seconds": s} for p, s in phases]
    assert [p["phase"] for p in ctl["devstack_slowest"]] == ["Starting Keystone", "Installing package prerequisites",
                                                             "Installing OpenStack project source"]
    # A hand-edited record: no crash, the phases it cannot read are left out.
    state = json.loads(lab_dir.state_file.read_text())
    state["stack"]["ctl"]["phases"] = [["x", "lots"], "y", ["Starting Keystone", 3]]
    lab_dir.write_state(state)
    with Hypervisor("test:///default") as hv:
        ctl = next(s for s in lab_status(lab_dir, hv) if s.name == "ctl").as_json()
    assert ctl["devstack_phases"] == [{"phase": "Starting Keystone", "seconds": 3.0}]


def test_urls_come_only_from_what_devstack_said(lab_dir: LabDir) -> None:
    record(lab_dir, [StackResult("ctl", "ok", 100, "Starting Keystone", keystone="http://10.0.0.10/identity/")])
    creds = credentials(lab_dir)
    assert creds.as_json()["machines"] == {"ctl": {"auth_url": "http://10.0.0.10/identity", "dashboard": None,
                                                   "stacked": True, "password": creds.password}}


@pytest.mark.parametrize("stack", [
    {"ctl": "ok"}, {"ctl": ["ok"]}, {"ctl": {"status": 3}}, {"ctl": {"status": "ok", "keystone": 5, "phases": "x"}},
    "ok", [1, 2], None, {"ctl": {"status": "ok", "seconds": "lots", "pid": "me"}},
])
def test_hand_edited_records_never_crash(lab_dir: LabDir, stack: object) -> None:
    """state.json edited by hand: a record that cannot be read counts as "never ran"."""
    from labctl.machine_status import devstack_phases

    lab_dir.state_file.write_text(json.dumps({"stack": stack}))
    creds = credentials(lab_dir)
    assert creds.machines["ctl"].auth_url.startswith("http://")
    states = devstack_states(lab_dir)
    devstack_phases(lab_dir)
    if isinstance(stack, dict) and stack.get("ctl") == {"status": "ok", "keystone": 5, "phases": "x"}:
        assert states == {"ctl": "stacked"} and creds.machines["ctl"].auth_url == "http://10.0.0.10/identity"
    mark(lab_dir, ["ctl"], "started")
    assert json.loads(lab_dir.state_file.read_text())["format"] == 1
