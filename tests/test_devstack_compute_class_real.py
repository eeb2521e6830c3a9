"""A classroom of the compute DevStack, for real: two seats of tests/test_devstack_compute_real.py's lab
(Nova, Neutron/OVN, Glance, Placement from ../shared/mirrors, stable/2026.1, day-one resources), seat-01
stacked once as the template and seat-02 made from its disk, each seat keeping seat-01's name and
address on a network of its own (classroom.seat_networks, labctl.classroom.networks). Each seat boots
its own server with its own admin password, refuses the other's, lists only its own services and
hypervisor, and a reset seat-02 loses the server made since and boots a new one.

Marked `devstack_compute_class` (and `vm`), out of the default run: the compute stack alone takes three
hours or more here, and the copy and the seats' making more.
    .venv/bin/python -m pytest -m devstack_compute_class
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_devstack_compute_real import boots, compute_settings

from conftest import Result, leave_nothing, libvirt_names, measured

pytestmark = [pytest.mark.vm, pytest.mark.devstack_compute_class]
SEATS = ("seat-01", "seat-02")
TOKEN = ("python3 -c 'import json, sys, urllib.request, urllib.error\n"
         "body = {\"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": {\"user\": {\"name\": \"admin\","
         " \"domain\": {\"id\": \"default\"}, \"password\": sys.argv[2]}}}}}\n"
         "req = urllib.request.Request(sys.argv[1] + \"/v3/auth/tokens\", json.dumps(body).encode(),"
         " {\"Content-Type\": \"application/json\"})\n"
         "try:\n    print(urllib.request.urlopen(req, timeout=60).status)\n"
         "except urllib.error.HTTPError as e:\n    print(e.code)' ")


@pytest.fixture
def compute_class(vm_env: Path, isolated_home: Path,
                  request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, str]]:
    settings, marker = compute_settings(vm_env, isolated_home)
    name = f"cmc-{uuid.uuid4().hex[:6]}"
    lab = {"name": name, **settings, "classroom": {"seats": len(SEATS), "listen": "127.0.0.1",
                                                   "ssh_port": 24200, "web_port": 29200}}
    (isolated_home / "lab.yaml").write_text(json.dumps(lab, indent=2) + "\n")  # JSON is YAML
    yield name, isolated_home, marker
    leave_nothing(name, list(SEATS), request)


def test_real_compute_class(run: Callable[..., Result], compute_class: tuple[str, Path, str]) -> None:
    name, folder, marker = compute_class
    progress = folder / "up.progress"
    started = time.monotonic()
    with progress.open("w") as err:
        up = subprocess.run([sys.executable, "-m", "labctl", "up", "--json"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=err, text=True, timeout=7 * 3600, stdin=subprocess.DEVNULL)
    shown = progress.read_text()
    assert up.returncode == 0, shown[-5000:]
    measured(f"labctl up of a {len(SEATS)}-seat compute class: {time.monotonic() - started:.0f} s")
    assert f"every seat keeps seat-01's name ({name})" in shown
    results = json.loads(up.stdout)["devstack"]["machines"]
    assert {s: results[s]["status"] for s in SEATS} == dict.fromkeys(SEATS, "ok"), results
    assert "stacking seat-01 once; 1 more seats will be made from its disk" in shown

    creds = json.loads(run("creds", "--json", "--lab", name).out)
    passwords = {s: creds["machines"][s]["password"] for s in SEATS}
    assert passwords["seat-01"] != passwords["seat-02"]

    def inside(seat: str, command: str) -> Result:
        openrc = run("creds", seat, "--lab", name).out.split("# openrc", 1)[1].split("\n", 1)[1]
        done = run("exec", seat, "--lab", name, "--timeout", "1800", "--json", "--", openrc + command)
        got = json.loads(done.out)["machines"][seat]
        return Result(got["exit_code"] if got["exit_code"] is not None else -1, got["stdout"],
                      got["stderr"] + (got["error"] or ""))

    for seat in SEATS:  # each seat's own cloud, with nothing of the other's
        services = json.loads(inside(seat, "openstack compute service list -f json").out)
        assert {s["Binary"] for s in services} >= {"nova-scheduler", "nova-conductor", "nova-compute"}, services
        assert all(s["State"] == "up" for s in services) and {s["Host"] for s in services} == {name}, services
        hypervisors = json.loads(inside(seat, "openstack hypervisor list -f json").out)
        assert len(hypervisors) == 1 and hypervisors[0]["State"] == "up", hypervisors
        agents = json.loads(inside(seat, "openstack network agent list -f json").out)
        assert agents and all(a["Alive"] in (True, ":-)") for a in agents), agents
        assert len({a["Host"] for a in agents}) == 1, agents
        boots(lambda command, s=seat: inside(s, command), "first", marker)

    # The right passwords first (Keystone locks an account out after two wrong ones), then the other seat's.
    for seat in SEATS:
        auth = creds["machines"][seat]["auth_url"]
        mine = run("exec", seat, "--lab", name, "--", TOKEN + f"{auth} '{passwords[seat]}'")
        assert mine.out.split()[-1:] == ["201"], mine.out + mine.err
    for seat, other in (("seat-02", "seat-01"), ("seat-01", "seat-02")):
        auth = creds["machines"][seat]["auth_url"]
        theirs = run("exec", seat, "--lab", name, "--", TOKEN + f"{auth} '{passwords[other]}'")
        assert theirs.out.split()[-1:] == ["401"], theirs.out + theirs.err

    reset = run("reset", "seat-02", "--lab", name)
    assert reset.code == 0, reset.out + reset.err
    gone = inside("seat-02", "openstack server show first")
    assert gone.code != 0 and "no server" in (gone.out + gone.err).lower(), gone.out + gone.err
    boots(lambda command: inside("seat-02", command), "second", marker)
    assert json.loads(inside("seat-01", "openstack server show first -f json").out)["status"] == "ACTIVE"

    assert run("destroy", "-y", "--lab", name).code == 0
    after = libvirt_names()
    assert not [n for n in after["domains"] | after["networks"] if name in n]
