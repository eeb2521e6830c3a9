"""The SSH layer against real OpenSSH servers on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port
from sshd import Sshd, make_sshd

from labctl.adapters.ssh import run_command, run_parallel
from labctl.protocols import SshTarget as Host
from labctl.protocols import SshUnreachable


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Sshd]]:
    started = [make_sshd(tmp_path / f"sshd{i}").start() for i in range(2)]
    yield started
    for server in started:
        server.stop()


def host(server: Sshd, name: str, known_hosts: Path) -> Host:
    return Host(name, "127.0.0.1", server.user, server.client_key, known_hosts, port=server.port)


def test_parallel_results_per_host(servers: list[Sshd], tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    hosts = [host(servers[0], "a", known), host(servers[1], "b", known),
             Host("down", "127.0.0.1", servers[0].user, servers[0].client_key, known, port=free_port())]
    results = run_parallel(hosts, "echo out-$PPID; echo err >&2; exit 3")
    assert list(results) == ["a", "b", "down"]
    for name in ("a", "b"):
        r = results[name]
        assert (r.exit_code, r.stderr.strip(), r.ok) == (3, "err", False)
        assert r.stdout.startswith("out-")
    assert results["down"].exit_code is None and results["down"].error
    assert "Connection refused" in results["down"].error or "Unable to connect" in results["down"].error


def test_host_keys_are_recorded_then_enforced(servers: list[Sshd], tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    first = run_command(host(servers[0], "a", known), "true")
    assert first.ok
    recorded = known.read_text()
    assert f"[127.0.0.1]:{servers[0].port} ssh-ed25519 " in recorded
    assert run_command(host(servers[0], "a", known), "true").ok
    assert known.read_text() == recorded
    # The same address now answers with another key: a man in the middle, or a recreated machine.
    servers[0].stop()
    servers[0].start()
    changed = run_command(host(servers[0], "a", known), "true")
    assert changed.exit_code is None and changed.error and "host key" in changed.error
    assert known.read_text() == recorded


def test_users_ssh_folder_is_not_touched(servers: list[Sshd], tmp_path: Path) -> None:
    ssh_dir = Path.home() / ".ssh"
    assert run_command(host(servers[1], "b", tmp_path / "kh"), "true").ok
    assert not (ssh_dir / "known_hosts").exists()


def test_users_fabric_and_ssh_configs_never_reach_lab_connections(servers: list[Sshd], tmp_path: Path,
                                                                   isolated_home: Path) -> None:
    """~/.fabric.yaml and ~/.ssh/config may forward the user's agent or go through a gateway: lab
    machines run third-party code, so labctl's connections (Fabric's and `labctl ssh`'s) ignore them."""
    import os
    import subprocess

    from labctl.adapters.ssh import connect
    from labctl.machine_access import ssh_options
    from labctl.state import LabDir

    home = Path(os.environ["HOME"])
    (home / ".fabric.yaml").write_text("forward_agent: true\ngateway: gateway.invalid\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "config").write_text("Host *\n  ForwardAgent yes\n  ProxyCommand false\n")
    target = host(servers[0], "a", tmp_path / "known_hosts")
    conn = connect(target)
    assert conn.forward_agent is False and conn.gateway is None
    assert run_command(target, "echo fine").stdout.strip() == "fine"

    # `labctl ssh`: a LABCTL_HOME with a space in it, and the user's ssh config above.
    lab_dir = LabDir("spaced", tmp_path / "My Labs" / "spaced")
    key = lab_dir.private_key("a")
    key.parent.mkdir(parents=True)
    key.write_bytes(servers[0].client_key.read_bytes())
    key.chmod(0o600)
    argv = ["ssh", *ssh_options(lab_dir, "a"), "-o", "BatchMode=yes", "-p", str(servers[0].port),
            f"{servers[0].user}@127.0.0.1", "echo fine"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0 and done.stdout.strip() == "fine", done.stderr
    assert "ForwardAgent=no" in argv and argv[1:3] == ["-F", "/dev/null"]
    # The host key went to the lab's known_hosts, not to a file named after half of its path.
    assert lab_dir.known_hosts.is_file() and "127.0.0.1" in lab_dir.known_hosts.read_text()
    assert not (tmp_path / "My").exists()


RACE = """
import sys
from pathlib import Path
import paramiko
from labctl.adapters.ssh import _TrustOnFirstUse
path, tag = Path(sys.argv[1]), sys.argv[2]
key = paramiko.Ed25519Key.from_private_key_file(sys.argv[3])
client = paramiko.SSHClient()
policy = _TrustOnFirstUse(path)
for i in range(150):
    policy.missing_host_key(client, f"10.{tag}.{i // 250}.{i % 250}", key)
"""


def test_two_processes_recording_first_contacts_lose_no_key(tmp_path: Path) -> None:
    """`labctl exec` and `labctl stack` at once, both meeting machines for the first time."""
    import subprocess
    import sys

    from sshd import keygen

    key = keygen(tmp_path / "k")
    known = tmp_path / "known_hosts"
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(known), tag, str(key)], stderr=subprocess.PIPE,
                              text=True) for tag in ("1", "2", "3")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    hosts = {line.split()[0] for line in known.read_text().splitlines() if line.strip()}
    assert len(hosts) == 450
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ssh_ssh_config_and_the_ansible_inventory_say_the_same(tmp_path: Path) -> None:
    """One set of options (labctl.sshopts) for every way in; a machine on another host is reached
    through it by each of them (the Ansible inventory used to lack the ProxyCommand)."""
    import shlex

    from labctl.ansible_inventory import inventory
    from labctl.machine_access import ssh_argv, ssh_config
    from labctl.machine_status import MachineStatus
    from labctl.state import LabDir

    lab_dir = LabDir("duo", tmp_path / "My Labs" / "duo")
    for name in ("near", "far"):
        lab_dir.private_key(name).parent.mkdir(parents=True, exist_ok=True)
        lab_dir.private_key(name).write_text("key")
    proxy = "ssh -T -o BatchMode=yes rack2 -W %h:%p"
    near = MachineStatus("near", "allinone", "10.1.0.10", "labctl-duo-near", "running", ("192.168.121.5",),
                         1024, 1, 1.0, "vagrant")
    far = MachineStatus("far", "allinone", "10.1.0.11", "labctl-duo-far", "running", ("192.168.121.6",),
                        1024, 1, 1.0, "vagrant", host="rack2", proxy=proxy)
    command = ssh_argv(lab_dir, far, [])
    assert command[:3] == ["ssh", "-F", "/dev/null"] and command[-1] == "vagrant@192.168.121.6"
    options = dict(command[i + 1].split("=", 1) for i in range(3, len(command) - 1, 2))
    assert options["ProxyCommand"] == proxy and options["ForwardAgent"] == "no"
    # quoted: "My Labs" has a space; one file per host: each host's management network hands out the
    # same addresses, so two machines on two hosts may share one
    assert options["UserKnownHostsFile"] == f'"{lab_dir.path / "known_hosts.rack2"}"'
    assert "ProxyCommand" not in " ".join(ssh_argv(lab_dir, near, []))
    twin = MachineStatus("twin", "allinone", "10.1.0.12", "labctl-duo-twin", "running", ("192.168.121.6",),
                         1024, 1, 1.0, "vagrant")  # far's address, on this machine
    from labctl.machine_status import host_of

    assert host_of(lab_dir, twin).known_hosts == lab_dir.known_hosts != host_of(lab_dir, far).known_hosts
    assert host_of(lab_dir, far).proxy_command == proxy.replace("%h:%p", "192.168.121.6:22")

    config = ssh_config(lab_dir, [near, far])
    far_block = config[config.index("Host far"):]
    assert {f"{k} {v}" for k, v in options.items()} <= {line.strip() for line in far_block.splitlines()}

    hosts = inventory(lab_dir, [near, far])["all"]["hosts"]
    words = shlex.split(hosts["far"]["ansible_ssh_common_args"])
    assert words == command[1:-1]  # ansible splits the string like a shell: the same words as `labctl ssh`
    assert "ProxyCommand" not in hosts["near"]["ansible_ssh_common_args"]


def test_a_runs_cancel_ends_its_own_sessions_and_waits_only(servers: list[Sshd], tmp_path: Path) -> None:
    """Cancellation belongs to one run (a command's Context): cancelling it ends that run's open
    sessions (their remote commands lose their channel) and its waits, and leaves another run alone."""
    import threading

    from labctl.adapters.ssh import Ssh
    from labctl.cancel import CancelToken

    known = tmp_path / "known_hosts"
    mine, other = Ssh(CancelToken()), Ssh(CancelToken())
    ended: list[tuple[int, str]] = []
    with mine.session(host(servers[0], "a", known)) as session, other.session(host(servers[1], "b", known)) as kept:
        worker = threading.Thread(target=lambda: ended.append(session.run("echo started; sleep 120", "sleeping",
                                                                          check=False)))
        worker.start()
        mine.cancel.wait(1.0)  # the command is running
        mine.cancel.cancel()
        worker.join(30)
        assert not worker.is_alive() and ended and ended[0][0] == -1  # no exit status: the channel went
        assert kept.run("echo alive", "the other run's session")[1].strip() == "alive"
    down = Host("down", "127.0.0.1", servers[0].user, servers[0].client_key, known, port=free_port())
    with pytest.raises(SshUnreachable, match="interrupted"):
        mine.wait(down, timeout=300)  # returns at once: its run is cancelled
    assert not other.cancel.cancelled
