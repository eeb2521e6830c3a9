"""A lab across two hypervisor hosts, with real VMs. The second host is this machine's own libvirtd
reached as another host is: over SSH (a real sshd on a loopback port, a key of its own), through
labctl's transport. Its machines are reached through that host as a gateway. Slow: marked `vm`."""

from __future__ import annotations

import json
import shlex
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sshd import Sshd, make_sshd

from conftest import Result, leave_nothing, libvirt_names
from labctl.names import MANAGEMENT_NETWORK

pytestmark = pytest.mark.vm


@pytest.fixture
def far_host(vm_env: Path, tmp_path: Path) -> Iterator[Sshd]:
    sshd = make_sshd(tmp_path / "sshd").start()
    yield sshd
    sshd.stop()


@pytest.fixture
def two_host_lab(vm_env: Path) -> Iterator[str]:
    name = f"two-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, ["alpha", "bravo"])


def statuses(run: Callable[..., Result]) -> dict[str, dict[str, object]]:
    result = run("status", "--json")
    return {m["name"]: m for m in json.loads(result.out)["machines"]}


def ansible_ssh(host: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """What Ansible's ssh connection runs for an inventory host: its common args, then user, key, address."""
    argv = ["ssh", *shlex.split(host["ansible_ssh_common_args"]), "-o", f"User={host['ansible_user']}",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-i", host["ansible_ssh_private_key_file"],
            host["ansible_host"], command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_a_lab_across_two_hosts(run: Callable[..., Result], isolated_home: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, far_host: Sshd, two_host_lab: str,
                                labctl_home: Path, vm_env: Path) -> None:
    before = libvirt_names()
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "hosts:\n  - {name: here, uri: 'qemu:///system'}\n"
        f"  - {{name: far, uri: 'qemu+ssh://{far_host.user}@127.0.0.1:{far_host.port}/system',"
        f" ssh_key: '{far_host.client_key}'}}\n")
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    (isolated_home / "lab.yaml").write_text(
        f"name: {two_host_lab}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
        "machines:\n  - {name: alpha, host: here}\n  - {name: bravo, host: far}\n")

    up = run("up", "--no-stack", "--json")
    assert up.code == 0, up.err
    lab_json = json.loads((labctl_home / "labs" / two_host_lab / "lab.json").read_text())
    assert {m["name"]: m["host"] for m in lab_json["machines"]} == {"alpha": None, "bravo": "far"}
    # Vagrant reached the far host through labctl's transport: its key is in labctl's own file.
    assert "ssh-ed25519" in (labctl_home / "hosts" / "known_hosts").read_text()
    vagrantfile = (labctl_home / "labs" / two_host_lab / "Vagrantfile").read_text()
    bravo = vagrantfile[vagrantfile.index("config.vm.define 'bravo'"):]
    assert "libvirt.uri = 'qemu+ext://far/system?command=" in bravo and "libvirt.proxy_command" in bravo
    assert "libvirt.uri" not in vagrantfile[:vagrantfile.index("config.vm.define 'bravo'")]

    machines = statuses(run)
    assert {n: (m["state"], m["host"]) for n, m in machines.items()} == {"alpha": ("running", None),
                                                                          "bravo": ("running", "far")}
    assert all(isinstance(m["uptime_s"], int) and m["ssh_address"] for m in machines.values())
    table = run("status").out
    assert "host" in table and "far" in table and "this one" in table

    # labctl's own SSH to bravo goes through the far host (its ProxyCommand, with labctl's options).
    from labctl.context import Context
    from labctl.machine_status import host_of, lab_status
    from labctl.state import LabHome

    ctx = Context(LabHome(labctl_home), vm_env / "cache", "qemu:///system", hosts_file=inventory)
    lab_dir = ctx.home.lab(two_host_lab)
    bravo_status = next(s for s in lab_status(lab_dir, ctx.hypervisor(), ctx) if s.name == "bravo")
    gateway = host_of(lab_dir, bravo_status).proxy_command
    ctx.close()
    assert gateway and f"-p {far_host.port}" in gateway and f"-W {machines['bravo']['ssh_address']}:22" in gateway
    hostnames = run("exec", "--all", "--json", "--", "hostname")
    assert hostnames.code == 0, hostnames.err
    outputs = json.loads(hostnames.out)["machines"]
    assert {n: r["stdout"].strip() for n, r in outputs.items()} == {"alpha": "alpha", "bravo": "bravo"}
    # Snapshots go to each machine's own host.
    assert run("snapshot", "save", "both").code == 0
    listed = json.loads(run("snapshot", "list", "--json").out)["machines"]
    assert {m: [s["name"] for s in snaps] for m, snaps in listed.items()} == {"alpha": ["both"], "bravo": ["both"]}
    config = run("ssh-config").out
    bravo_block = config[config.index("Host bravo"):]
    assert "ProxyCommand ssh" in bravo_block and f"-p {far_host.port}" in bravo_block
    # The Ansible inventory reaches both, bravo through the far host: the ssh command Ansible's ssh
    # connection makes from it (Ansible itself is not installed here; its ssh plugin runs exactly this).
    hosts = yaml.safe_load(run("inventory").out)["all"]["hosts"]
    assert {name: ansible_ssh(hosts[name], "hostname").stdout.strip() for name in ("alpha", "bravo")} == {
        "alpha": "alpha", "bravo": "bravo"}

    # halt and resume act on each machine's host.
    assert run("halt").code == 0
    assert {n: m["state"] for n, m in statuses(run).items()} == {"alpha": "shutoff", "bravo": "shutoff"}
    assert run("resume").code == 0
    resumed = statuses(run)
    assert {n: m["state"] for n, m in resumed.items()} == {"alpha": "running", "bravo": "running"}
    assert isinstance(resumed["bravo"]["uptime_s"], int)  # dated anew on its own host

    # The far host goes down: status names it and still shows the machine here; exec to bravo,
    # which goes through that host, fails; alpha answers.
    host_key = next(p for p in far_host.folder.glob("host_key_*") if p.suffix != ".pub")
    far_host.stop()
    down = run("status")
    assert down.code == 0, down.err
    assert "host unreachable" in down.out and "host far cannot be reached" in down.out
    assert statuses(run)["alpha"]["state"] == "running"
    alone = run("exec", "alpha", "--json", "--", "hostname")
    assert alone.code == 0 and json.loads(alone.out)["machines"]["alpha"]["stdout"].strip() == "alpha"
    assert ansible_ssh(hosts["bravo"], "hostname").returncode != 0  # it went through the far host
    assert ansible_ssh(hosts["alpha"], "hostname").stdout.strip() == "alpha"
    refused = run("destroy", "-y")
    assert refused.code != 0 and "host far" in refused.err
    assert (labctl_home / "labs" / two_host_lab).is_dir()  # nothing removed while a host is missing

    far_host.start(host_key=host_key)
    destroyed = run("destroy", "-y")
    assert destroyed.code == 0, destroyed.err
    after = libvirt_names()
    # vagrant-libvirt's management network stays, made by labctl for every lab (halted labs need it).
    assert after["domains"] == before["domains"] and MANAGEMENT_NETWORK in after["networks"]
    assert after["networks"] - {MANAGEMENT_NETWORK} == before["networks"] - {MANAGEMENT_NETWORK}
    assert after["volumes"] == before["volumes"]
