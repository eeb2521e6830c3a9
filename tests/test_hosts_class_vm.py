"""A classroom across two hosts that are really two (issue 23): this machine, and a second libvirtd in
namespaces of its own, reached only through its sshd (tests/second_host.py). Four stand-in seats, two
on each host: seat-01 stacks once on the second host (through the relays to this machine's caches
and git mirrors), its base is sent to this machine, every seat is made from it; each seat is logged
into from a network namespace standing in for a trainee's laptop, with the command and password of
the sheet; the package caches fetch once for both hosts; a seat on the second host is reset; destroy
leaves both hosts as they were.

Marked `hosts_class` (and `vm`), out of the default run (CI keeps its time): pytest -m hosts_class.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosts import add_namespace
from second_host import SecondHost
from standin_devstack import make_repo

from conftest import TEST_CACHE, Result, leave_nothing, libvirt_names

pytestmark = [pytest.mark.vm, pytest.mark.hosts_class]
SEATS = ("seat-01", "seat-02", "seat-03", "seat-04")
MIRRORS = Path(__file__).resolve().parent.parent.parent / "shared" / "mirrors"
SEAT_MB = 1024

# Run in the laptop's network namespace: a trainee's SSH login with the sheet's password; prints the
# hostname of the machine it reached.
LOGIN = """import sys, paramiko
address, port, user, password = sys.argv[1:5]
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect(address, port=int(port), username=user, password=password, look_for_keys=False,
               allow_agent=False, timeout=60)
print(client.exec_command("hostname", timeout=60)[1].read().decode().strip())
client.close()"""


@pytest.fixture
def second(vm_env: Path, tmp_path: Path) -> Iterator[SecondHost]:
    host = SecondHost(tmp_path / "second", index=51).start()
    yield host
    host.stop()


@pytest.fixture
def laptop() -> Iterator[str]:
    """A trainee's laptop: a network namespace of its own, whose only way out is this machine."""
    netns, veth = f"labctl-laptop-{os.getpid() % 10000}", f"lp{os.getpid() % 10000}"
    add_namespace(netns, veth, "10.197.1.1", "10.197.1.2", default_route=True)
    yield netns
    subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
    subprocess.run(["ip", "link", "del", veth], check=False, capture_output=True)


@pytest.fixture
def class_name(vm_env: Path) -> Iterator[str]:
    name = f"two-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, list(SEATS))


def names_on(second: SecondHost) -> dict[str, set[str]]:
    """Every domain, network and volume of the second host, as its own libvirt lists them."""
    def listed(*args: str) -> set[str]:
        return set(second.virsh(*args).stdout.split())

    volumes = set()
    for pool in listed("pool-list", "--name"):
        volumes |= {line.split()[0] for line in second.virsh("vol-list", pool).stdout.splitlines() if line.strip()}
    return {"domains": listed("list", "--all", "--name"), "networks": listed("net-list", "--all", "--name"),
            "volumes": volumes}


def trainee_login(laptop: str, ssh_command: str, password: str) -> str:
    """The sheet's command (`ssh -p PORT stack@ADDRESS`) with its password, from the laptop."""
    words = shlex.split(ssh_command)
    port, (user, address) = words[words.index("-p") + 1], words[-1].split("@")
    done = subprocess.run(["ip", "netns", "exec", laptop, sys.executable, "-c", LOGIN, address, port, user, password],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def apt_log_lines(kind: str, package: str) -> list[str]:
    """apt-cacher-ng's transfer log lines of one kind (I: read from outside, O: served) for a package."""
    log = TEST_CACHE / "cache" / "caches" / "logs" / "apt" / "apt-cacher.log"
    return [line for line in log.read_text(errors="replace").splitlines()
            if f"|{kind}|" in line and f"/{package}_" in line] if log.exists() else []


def test_a_class_across_two_hosts(run: Callable[..., Result], isolated_home: Path, labctl_home: Path,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: SecondHost,
                                  laptop: str, class_name: str) -> None:
    before_here, before_there = libvirt_names(), names_on(second)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n" + second.inventory_line() + "  - {name: here, uri: 'qemu:///system'}\n")
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    free = {h["name"]: h["memory_free_mb"] for h in json.loads(run("hosts", "--json").out)["hosts"]}
    # Reserves that leave each host room for two seats exactly: two on each.
    reserve = {name: max(0, mb - 2 * SEAT_MB - SEAT_MB // 2) for name, mb in free.items()}
    inventory.write_text("hosts:\n" + second.inventory_line().replace("}", f", reserve: {reserve['second']}M}}")
                         + f"  - {{name: here, uri: 'qemu:///system', reserve: {reserve['here']}M}}\n")
    repo = make_repo(isolated_home / "devstack")
    base = 23000 + (os.getpid() % 400) * 10
    # The stand-in is pushed; it clones requirements from GIT_BASE: the mirrors, served here and
    # relayed to the second host, where seat-01 stacks.
    (isolated_home / "lab.yaml").write_text(
        f"name: {class_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\ncaches: true\n"
        f"classroom:\n  seats: 4\n  ssh_port: {base}\n  web_port: {base + 5000}\n"
        f"devstack:\n  repo: {repo}\n  git_base: {MIRRORS}\n"
        "  localrc: {STANDIN_PHASE_SECONDS: 0.1, ENABLED_SERVICES: 'key,mysql'}\n")
    planned = run("plan", "--json")
    assert planned.code == 0, planned.err
    assert json.loads(planned.out)["placement"]["hosts"] == {"seat-01": "second", "seat-02": "second",
                                                             "seat-03": "here", "seat-04": "here"}

    up = run("up", "--json")
    (tmp_path / "up.err").write_text(up.err)  # what `up` said, kept for a failure's diagnosis
    assert up.code == 0, up.err
    report = json.loads(up.out)
    assert {n: r["status"] for n, r in report["devstack"]["machines"].items()} == dict.fromkeys(SEATS, "ok")
    assert "stacking seat-01 once; 3 more seats will be made from its disk" in up.err
    assert "host second's machines reach the same caches at 192.168.121.1" in up.err
    assert "(on host second too, through SSH)" in up.err  # the stand-in's git mirror, relayed
    sent = [line for line in up.err.splitlines() if "this machine has the base:" in line]
    assert len(sent) == 1, up.err[-3000:]  # sent once, to the one other host
    assert {s: (h["ssh"]["state"], h["keystone"]["state"]) for s, h in report["health"].items()} == \
        dict.fromkeys(SEATS, ("ok", "ok"))
    machines = {m["name"]: m for m in report["machines"]}
    assert {s: machines[s]["host"] for s in SEATS} == {"seat-01": "second", "seat-02": "second",
                                                       "seat-03": None, "seat-04": None}
    # The box was uploaded to the second host, which had none; its seats' disks are overlays on the base.
    there = names_on(second)
    assert any("_vagrant_box_image_" in v for v in there["volumes"])
    assert f"labctl-{class_name}-seat-01.base.img" in there["volumes"]
    assert f"labctl-{class_name}-seat-01.base.img" in libvirt_names()["volumes"]  # the copy sent here

    # Each trainee, from their laptop, with exactly the sheet's command and password.
    sheet = run("sheet", "--format", "csv", "-o", "-")
    assert sheet.code == 0, sheet.err
    cards = {row["seat"]: row for row in csv.DictReader(io.StringIO(sheet.out))}
    for seat in SEATS:
        assert trainee_login(laptop, cards[seat]["ssh_command"], cards[seat]["login_password"]) == seat
    # seat-03's password does not open seat-01's door.
    words = shlex.split(cards["seat-01"]["ssh_command"])
    user, address = words[-1].split("@")
    wrong = subprocess.run(["ip", "netns", "exec", laptop, sys.executable, "-c", LOGIN, address,
                            words[words.index("-p") + 1], user, cards["seat-03"]["login_password"]],
                           capture_output=True, text=True, timeout=180)
    assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr

    # Both hosts' seats install a package through the one cache: fetched from outside once at most.
    package = "figlet"
    fetched, served = len(apt_log_lines("I", package)), len(apt_log_lines("O", package))
    for seat in ("seat-02", "seat-04"):
        got = run("exec", seat, "--", f"sudo apt-get update -q && sudo apt-get install -q -y --download-only"
                                      f" {package}")
        assert got.code == 0, got.out + got.err
    assert len(apt_log_lines("I", package)) - fetched <= 1
    assert len(apt_log_lines("O", package)) - served >= 2

    # A seat on the second host broken, then reset to its stacked snapshot.
    assert run("exec", "seat-02", "--", "sudo touch /opt/stack/broken-by-trainee").code == 0
    reset = run("reset", "seat-02")
    assert reset.code == 0, reset.err
    after = run("exec", "seat-02", "--json", "--", "hostname; test -e /opt/stack/broken-by-trainee && echo still")
    assert json.loads(after.out)["machines"]["seat-02"]["stdout"].split() == ["seat-02"]
    assert trainee_login(laptop, cards["seat-02"]["ssh_command"], cards["seat-02"]["login_password"]) == "seat-02"

    destroyed = run("destroy", "-y")
    assert destroyed.code == 0, destroyed.err
    after_here, after_there = libvirt_names(), names_on(second)
    for before, now in ((before_here, after_here), (before_there, after_there)):
        assert not {n for n in now["domains"] | now["networks"] | now["volumes"] if class_name in n}
        assert now["domains"] == before["domains"]
        # What labctl and Vagrant keep for the next lab: the management network and the boxes.
        assert now["networks"] - {"vagrant-libvirt"} == before["networks"] - {"vagrant-libvirt"}
        assert all("_vagrant_box_image_" in v for v in now["volumes"] - before["volumes"])
    assert not list((labctl_home / "labs").glob(f"{class_name}*"))
