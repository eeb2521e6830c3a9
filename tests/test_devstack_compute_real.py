"""The DevStack people use, for real: Nova, Neutron (OVN), Glance and Placement from ../shared/mirrors
(stable/2026.1) in one Debian 12 VM, with lab.yaml's day-one resources (a kernel, ramdisk and machine
image made here from Debian's packages, a flavor, labctl's keypair, ssh and icmp rules), a server
booted inside (a guest of a guest, under software emulation), `labctl cloud` again (nothing to do),
and `labctl reset` (the server made after stacking is gone, and a new one boots).

Marked `devstack_compute` (and `vm`), out of the default run: about two hours and a half here (on the
DevStack-ready box with DevStack's virtualenv, devstack.preinstall, its stack.sh took 76 minutes and
its `up` 1h43m, bench/results/devstack-compute.md; on a plain box stack.sh took over 2h40m).
    .venv/bin/python -m pytest -m devstack_compute
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_devstack_real import HOST_CAS, MIRRORS, token
from testimage import boot_image

from conftest import Result, leave_nothing, libvirt_names, measured

pytestmark = [pytest.mark.vm, pytest.mark.devstack_compute]

SERVICES = ("key,mysql,rabbit,n-api,n-cpu,n-cond,n-sch,n-api-meta,placement-api,placement-client,g-api,"
            "ovn-controller,ovn-northd,ovs-vswitchd,ovsdb-server,q-svc,q-ovn-agent")
BRANCH = "stable/2026.1"


def compute_settings(vm_env: Path, folder: Path) -> tuple[dict[str, object], str]:
    """What every compute lab of these tests asks (its name and machines aside), the test image's
    files copied into `folder`, and the marker the image writes on its console."""
    if not (MIRRORS / "openstack" / "nova.git").is_dir():
        pytest.fail(f"{MIRRORS} has no nova: the compute test needs ../shared/mirrors")
    image = boot_image(vm_env)
    images = folder / "images"
    images.mkdir()
    for made in (image.kernel, image.ramdisk, image.root):
        shutil.copyfile(made, images / made.name)
    cas = sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []
    lab = {
        "defaults": {"distro": "debian:12", "memory": "10G", "cpus": 2, "disk": "30G"},
        **({"ca_certificates": [str(p) for p in cas]} if cas else {}),
        "caches": True,
        # The packages stack.sh installs are in the box already (built once, natively, into the test cache
        # by `pytest -m devstack_box` or by this `up`): apt-get took 50 of its 161 minutes here.
        "devstack": {"git_base": str(MIRRORS), "branch": BRANCH, "preinstall": True,
                     "localrc": {"ENABLED_SERVICES": SERVICES, "DOWNLOAD_DEFAULT_IMAGES": False}},
        "cloud": {
            "images": [
                {"name": "tiny-kernel", "file": "images/vmlinuz", "disk_format": "aki", "container_format": "aki"},
                {"name": "tiny-ramdisk", "file": "images/initrd.gz", "disk_format": "ari", "container_format": "ari"},
                {"name": "tiny", "file": "images/root.img", "disk_format": "ami", "container_format": "ami",
                 "kernel": "tiny-kernel", "ramdisk": "tiny-ramdisk"},
            ],
            "flavors": [{"name": "m1.nano", "ram": 256, "disk": 1, "vcpus": 1}],
            "keypair": "labctl",
            "security_group_rules": ["ssh", "icmp"],
        },
    }
    return lab, image.marker


@pytest.fixture
def compute_lab(vm_env: Path, isolated_home: Path,
                request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, str]]:
    settings, marker = compute_settings(vm_env, isolated_home)
    name = f"cmp-{uuid.uuid4().hex[:6]}"
    lab = {"name": name, **settings, "machines": [{"name": "aio"}]}
    (isolated_home / "lab.yaml").write_text(json.dumps(lab, indent=2) + "\n")  # JSON is YAML
    yield name, isolated_home, marker
    leave_nothing(name, ["aio"], request)


def boots(inside: Callable[[str], Result], server: str, marker: str) -> None:
    """`server` reaches ACTIVE and its console shows the test image's marker (a guest of a guest)."""
    made = inside(f"openstack server create --image tiny --flavor m1.nano --network private --key-name labctl"
                  f" --security-group default --wait {server} -f json")
    assert made.code == 0, made.out + made.err
    assert json.loads(made.out)["status"] == "ACTIVE", made.out
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        log = inside(f"openstack console log show {server}")
        if marker in log.out:
            return
        time.sleep(20)
    pytest.fail(f"{server}'s console never showed {marker}: {log.out[-2000:]}")


def test_real_compute_devstack(run: Callable[..., Result], compute_lab: tuple[str, Path, str]) -> None:
    name, folder, marker = compute_lab
    progress = folder / "up.progress"
    started = time.monotonic()
    with progress.open("w") as err:
        up = subprocess.run([sys.executable, "-m", "labctl", "up", "--json"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=err, text=True, timeout=5 * 3600, stdin=subprocess.DEVNULL)
    shown = progress.read_text()
    assert up.returncode == 0, shown[-5000:]
    measured(f"labctl up of the compute DevStack: {time.monotonic() - started:.0f} s")
    aio = json.loads(up.stdout)["devstack"]["machines"]["aio"]
    assert aio["status"] == "ok" and aio["problems"] == []
    assert "Day-one resources" in [p["phase"] for p in aio["phases"]]
    assert "SERVICE_TIMEOUT=600" in shown  # the plan said the waits were raised (software emulation)
    assert "labctl/debian-12-devstack-" in shown  # it booted the DevStack-ready box

    creds = json.loads(run("creds", "--json", "--lab", name).out)
    openrc = run("creds", "--lab", name).out.split("# openrc", 1)[1].split("\n", 1)[1]

    def inside(command: str) -> Result:
        done = run("exec", "aio", "--lab", name, "--timeout", "1800", "--json", "--", openrc + command)
        got = json.loads(done.out)["machines"]["aio"]
        return Result(got["exit_code"] if got["exit_code"] is not None else -1, got["stdout"],
                      got["stderr"] + (got["error"] or ""))

    services = json.loads(inside("openstack compute service list -f json").out)
    assert {s["Binary"] for s in services} >= {"nova-scheduler", "nova-conductor", "nova-compute"}
    assert all(s["State"] == "up" for s in services), services
    agents = json.loads(inside("openstack network agent list -f json").out)
    assert agents and all(a["Alive"] in (True, ":-)") for a in agents), agents
    assert {i["Name"] for i in json.loads(inside("openstack image list -f json").out)} >= {"tiny", "tiny-kernel"}
    # The openrc `labctl creds` prints works from the host: Keystone answers its password there.
    assert token(creds["machines"]["aio"]["auth_url"], creds["username"], creds["password"]) == 201

    boots(inside, "first", marker)
    again = run("cloud", "--lab", name, "--json")
    assert again.code == 0, again.out + again.err
    assert {o["state"] for o in json.loads(again.out)["machines"]["aio"]} == {"present"}

    # reset: back to the stacked snapshot (day-one resources in it): the server made since is gone,
    # Nova and Neutron answer, and a new server boots.
    reset = run("reset", "aio", "--lab", name)
    assert reset.code == 0, reset.out + reset.err
    gone = inside("openstack server show first")
    assert gone.code != 0 and "no server" in (gone.out + gone.err).lower(), gone.out + gone.err
    boots(inside, "second", marker)

    assert run("destroy", "-y", "--lab", name).code == 0
    after = libvirt_names()
    assert not [n for n in after["domains"] | after["networks"] if name in n]
