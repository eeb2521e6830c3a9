"""A classroom of 3 seats on real VMs (stand-in DevStack), as a trainer runs it an hour before class
and during it: one progress line per seat, a failed seat retried alone, the sheet in a browser,
a trainee's laptop (a network namespace) using the sheet's ssh command, a broken seat reset, and
Ansible reading the inventory."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosts import add_namespace, require_root
from PIL import Image
from standin_devstack import make_repo
from test_sheet_browser import CARD_HEADER, bands, browse

from conftest import TEST_CACHE, Result, leave_nothing, libvirt_names

pytestmark = pytest.mark.vm
VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"


class Laptop:
    """A trainee's laptop: its own network namespace, reaching this host over a veth pair only
    (this host's lab networks are not routed to it)."""

    def __init__(self, index: int) -> None:
        self.netns = f"labctl-laptop-{os.getpid() % 10000}"
        self.veth = f"llap{os.getpid() % 10000}"
        self.host_address = f"10.198.{index}.1"
        self.address = f"10.198.{index}.2"

    def __enter__(self) -> Laptop:
        add_namespace(self.netns, self.veth, self.host_address, self.address, default_route=True)
        return self

    def __exit__(self, *_: object) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], check=False, capture_output=True)

    def ssh(self, sheet_command: str, password: str, remote: str, folder: Path) -> subprocess.CompletedProcess[str]:
        """The sheet's ssh command as a trainee types it, the password typed at its prompt (askpass)."""
        askpass = folder / "askpass"
        askpass.write_text(f"#!/bin/sh\necho {shlex.quote(password)}\n")
        askpass.chmod(0o700)
        words = shlex.split(sheet_command)
        argv = [words[0], "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "NumberOfPasswordPrompts=1",
                *words[1:], remote]
        env = {"PATH": os.environ["PATH"], "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
               "DISPLAY": ":0", "HOME": str(folder)}
        return subprocess.run(["ip", "netns", "exec", self.netns, "setsid", "-w", *argv], env=env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    def reaches(self, address: str, port: int) -> bool:
        probe = subprocess.run(["ip", "netns", "exec", self.netns, "timeout", "5", "bash", "-c",
                                f"exec 3<>/dev/tcp/{address}/{port}"], capture_output=True)
        return probe.returncode == 0


@pytest.fixture
def class_name(vm_env: Path) -> Iterator[str]:
    name = f"cls-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, ["seat-01", "seat-02", "seat-03"])


def test_classroom(run: Callable[..., Result], isolated_home: Path, class_name: str, tmp_path: Path) -> None:
    require_root()
    before = libvirt_names()
    repo = make_repo(isolated_home / "devstack")
    (isolated_home / "local.conf.d").mkdir()
    fail = isolated_home / "local.conf.d" / "seat-02.conf"
    fail.write_text('[[local|localrc]]\nSTANDIN_FAIL_AT="Starting Neutron"\n')
    index = 1 + os.getpid() % 250
    base = 20000 + (os.getpid() % 400) * 100
    with Laptop(index) as laptop:
        (isolated_home / "lab.yaml").write_text(
            f"name: {class_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
            f"classroom:\n  trainees: [Ada Lovelace, Grace Hopper]\n  seats: 3\n  clone: false\n"
            f"  address: {laptop.host_address}\n  ssh_port: {base}\n  web_port: {base + 50}\n"
            f"devstack:\n  repo: {repo}\n  localrc: {{STANDIN_PHASE_SECONDS: 0.1}}\n")

        # All seats up and stacking in parallel (clone: false; test_clone_vm.py clones), one progress
        # line per seat; seat 2 fails on request.
        up = run("up", "--json")
        assert up.code == 1, up.err
        results = json.loads(up.out)["devstack"]["machines"]
        assert {n: r["status"] for n, r in results.items()} == {"seat-01": "ok", "seat-02": "failed",
                                                                 "seat-03": "ok"}
        # The machines at up's end are as they are then, not as they booted (issue 24, item 12).
        shown = {m["name"]: m for m in json.loads(up.out)["machines"]}
        assert shown["seat-02"]["devstack"] == "failed at Starting Neutron", shown["seat-02"]
        assert shown["seat-01"]["devstack"] == "stacked" and shown["seat-01"]["uptime_s"] > 0
        for seat in ("seat-01", "seat-02", "seat-03"):
            assert f"{seat}: opening the seat to its trainee" in up.err
        assert "seat-01: taking the stacked snapshot" in up.err and "seat-02: taking the stacked" not in up.err
        assert f"SSH on ports {base + 1}-{base + 3}" in up.err

        # Fixed: only seat 2 runs again, and gets its snapshot.
        fail.unlink()
        retry = run("stack", "--json")
        assert retry.code == 0, retry.err
        assert {n: r["status"] for n, r in json.loads(retry.out)["machines"].items()} == {"seat-02": "ok"}
        snaps = json.loads(run("snapshot", "list", "--json").out)["machines"]
        assert {m: [s["name"] for s in v] for m, v in snaps.items()} == {
            "seat-01": ["stacked"], "seat-02": ["stacked"], "seat-03": ["stacked"]}
        status = json.loads(run("status", "--json").out)["machines"]
        assert [(m["name"], m["devstack"]) for m in status] == [(f"seat-0{n}", "stacked") for n in (1, 2, 3)]
        assert [m["trainee"] for m in status] == ["Ada Lovelace", "Grace Hopper", None]

        # The sheet, in a browser: three cards.
        sheet = run("sheet", "-o", str(tmp_path / "sheet.html"))
        assert sheet.code == 0, sheet.err
        assert "3 of 3 seats ready" in sheet.out
        shot = tmp_path / "sheet.png"
        browse(tmp_path / "sheet.html", "--window-size=900,2600", f"--screenshot={shot}")
        assert len(bands(Image.open(shot), 150, CARD_HEADER)) == 3
        table = run("sheet", "--format", "csv", "-o", "-").out
        cards = {row["seat"]: row for row in csv.DictReader(io.StringIO(table))}
        assert [cards[s]["trainee"] for s in sorted(cards)] == ["Ada Lovelace", "Grace Hopper", ""]
        assert cards["seat-01"]["ssh_command"] == f"ssh -p {base + 1} stack@{laptop.host_address}"

        # From the laptop: the sheet's command and seat 1's password open seat 1, and nothing else.
        seat1, seat2 = cards["seat-01"], cards["seat-02"]
        inside = laptop.ssh(seat1["ssh_command"], seat1["login_password"], "hostname; id -un", tmp_path)
        assert inside.returncode == 0, inside.stderr
        assert inside.stdout.split() == ["seat-01", "stack"]
        wrong = laptop.ssh(seat2["ssh_command"], seat1["login_password"], "hostname", tmp_path)
        assert wrong.returncode == 255 and "Permission denied" in wrong.stderr, wrong.stderr
        assert laptop.ssh(seat2["ssh_command"], seat2["login_password"], "hostname", tmp_path).stdout.strip() \
            == "seat-02"
        lab_ips = {m["name"]: m["ip"] for m in status}
        assert not laptop.reaches(lab_ips["seat-01"], 22)  # only through the host's ports

        # A trainee breaks seat 2; reset brings it back and leaves seat 1 alone.
        assert run("exec", "seat-02", "--", "sudo rm /opt/stack/standin-stacked").code == 0
        assert run("exec", "seat-01", "--", "touch /tmp/work-in-progress").code == 0
        reset = run("reset", "seat-02")
        assert reset.code == 0, reset.err
        check = run("exec", "seat-01", "seat-02", "--json", "--", "ls /opt/stack/standin-stacked /tmp/work-in-progress")
        outputs = json.loads(check.out)["machines"]
        assert outputs["seat-02"]["stdout"].split() == ["/opt/stack/standin-stacked"]  # back; no later work
        assert outputs["seat-01"]["exit_code"] == 0  # untouched
        clock = run("exec", "seat-02", "--", "date +%s")
        assert abs(int(clock.out.split()[-1]) - int(__import__("time").time())) < 30  # its clock was set

        # Ansible reads the inventory and reaches every seat.
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(run("inventory").out)
        listed = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr
        groups = json.loads(listed.stdout)
        assert groups["seat_02"]["hosts"] == ["seat-02"] and len(groups["allinone"]["hosts"]) == 3
        ping = subprocess.run([str(VENV_BIN / "ansible"), "all", "-i", str(inventory), "-m", "ping"],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True"})
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert ping.stdout.count("SUCCESS") == 3

        # The whole class halted: the ports close; resumed, they open again.
        assert run("halt").code == 0
        assert not laptop.reaches(laptop.host_address, base + 1)
        assert run("resume", "seat-01").code == 0
        again = laptop.ssh(seat1["ssh_command"], seat1["login_password"], "hostname", tmp_path)
        assert again.returncode == 0 and again.stdout.strip() == "seat-01", again.stderr

        destroyed = run("destroy", "-y")
        assert destroyed.code == 0, destroyed.err
        said = destroyed.out + destroyed.err
        assert "deleted 3 snapshot(s)" in said and "closed the trainees' ports" in said
        assert not laptop.reaches(laptop.host_address, base + 1)
    after = libvirt_names()
    assert not {n for n in after["domains"] | after["networks"] if class_name in n}
    # Nothing new but box images, and seat-01's stacked image, which outlives its class by design (the
    # test's teardown removes it).
    kept = [f"labctl-image.{i['digest']}.img" for i in json.loads(run("images", "--json").out)["images"]]
    assert all("_vagrant_box_image_" in v or v in kept for v in after["volumes"] - before["volumes"])
    assert TEST_CACHE.exists()
