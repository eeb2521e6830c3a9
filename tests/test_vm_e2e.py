"""End to end on real VMs: libvirt (software emulation here), vagrant-libvirt, a Debian box built
from Debian's packages, and SSH into the machines. Slow (minutes): marked `vm`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from standin_devstack import make_repo

from conftest import Result, leave_nothing, libvirt_names

pytestmark = pytest.mark.vm


def labctl_process(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """For commands that hand the terminal over (labctl ssh): a process of its own."""
    return subprocess.run([sys.executable, "-m", "labctl", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_box_build(run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   vm_env: Path) -> None:
    """Always rebuildable: a build from scratch into an empty cache gives a proper libvirt box."""
    monkeypatch.setenv("LABCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant.d"))
    result = run("box", "build", "debian")
    assert result.code == 0, result.err
    box = tmp_path / "cache" / "boxes" / "debian-12-amd64.box"
    with tarfile.open(box) as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "metadata.json"]
        meta = json.load(tar.extractfile("metadata.json"))  # type: ignore[arg-type]
        image = tar.extractfile("box.img")
        assert image is not None
        with (tmp_path / "box.img").open("wb") as out:
            shutil.copyfileobj(image, out)
    assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": 10}
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(tmp_path / "box.img")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 10 * 1024**3
    listed = json.loads(run("box", "list", "--json").out)["boxes"]
    assert {"name": "labctl/debian-12", "provider": "libvirt"}.items() <= listed[0].items()


@pytest.fixture
def lab_name(vm_env: Path) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, ["alpha", "bravo"])


def test_lab_lifecycle(run: Callable[..., Result], isolated_home: Path, lab_name: str) -> None:
    before = libvirt_names()
    repo = make_repo(isolated_home / "devstack")
    (isolated_home / "local.conf.d").mkdir()
    (isolated_home / "local.conf.d" / "bravo.conf").write_text(
        '[[local|localrc]]\nSTANDIN_FAIL_AT="Starting Neutron"\n')
    (isolated_home / "lab.yaml").write_text(
        f"name: {lab_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
        f"machines:\n  - {{name: alpha}}\n  - {{name: bravo}}\n"
        f"devstack:\n  repo: {repo}\n  localrc: {{STANDIN_PHASE_SECONDS: 0.1}}\n")

    # Machines up, then DevStack (pushed from the host folder) on both: b fails on request.
    up = run("up", "--json")
    assert up.code == 1, up.err
    report = json.loads(up.out)
    machines = {m["name"]: m for m in report["machines"]}
    assert set(machines) == {"alpha", "bravo"}
    assert all(m["state"] == "running" and m["ssh_address"] for m in machines.values())
    assert "software emulation" in up.err or "kvm" in up.err.lower()
    stacked = report["devstack"]["machines"]
    assert stacked["alpha"]["status"] == "ok"
    assert stacked["alpha"]["dashboard"] == f"http://{machines['alpha']['ip']}/dashboard"
    assert (stacked["bravo"]["status"], stacked["bravo"]["phase"]) == ("failed", "Starting Neutron")
    log = run("logs", "alpha")
    assert log.code == 0 and "Starting Horizon" in log.out and "The password: ********" in log.out
    creds = json.loads(run("creds", "--json").out)
    assert creds["password"] not in log.out + up.out + up.err
    inside = run("exec", "alpha", "--", "sudo cat /opt/stack/standin-stacked")
    assert f"HOST_IP={machines['alpha']['ip']}" in inside.out and "USER=stack" in inside.out

    # Fixed: only b runs again.
    (isolated_home / "local.conf.d" / "bravo.conf").unlink()
    retry = run("stack", "--json")
    assert retry.code == 0, retry.err
    assert {n: r["status"] for n, r in json.loads(retry.out)["machines"].items()} == {"bravo": "ok"}
    assert "every machine has stacked already" in run("stack").out
    # The cloud in each machine that stacked asked how it is, by up and by status --health (the
    # stand-in's openstack client answers for Keystone, and finds it dead on request).
    assert report["health"]["alpha"]["keystone"] == {"state": "ok", "detail": "token issued"}
    assert report["health"]["alpha"]["ssh"]["state"] == "ok" and set(report["health"]) == {"alpha"}
    healthy = run("status", "--health", "--json")
    assert healthy.code == 0 and set(json.loads(healthy.out)["health"]) == {"alpha", "bravo"}, healthy.err
    assert run("exec", "alpha", "--", "echo keystone | sudo tee /etc/standin-health-fail").code == 0
    sick = run("status", "--health", "--json")
    assert sick.code == 1 and json.loads(sick.out)["health"]["alpha"]["keystone"]["state"] == "failed"
    assert "HTTP 401 Unauthorized" in json.loads(sick.out)["health"]["alpha"]["keystone"]["detail"]
    shown = run("status", "--health")
    assert shown.code == 1 and "The cloud in lab" in shown.out and "failed" in shown.out
    assert run("exec", "alpha", "--", "sudo truncate -s0 /etc/standin-health-fail").code == 0

    status = json.loads(run("status", "--json").out)["machines"]
    for m in status:
        assert (m["state"], m["memory_mb"], m["vcpus"]) == ("running", 1024, 1)
        assert m["addresses"] and m["domain"] == f"labctl-{lab_name}-{m['name']}"
        assert 0 < m["uptime_s"] < 7200  # dated by labctl in the running domain's libvirt metadata

    hostnames = run("exec", "--all", "--json", "--", "hostname")
    assert hostnames.code == 0, hostnames.err
    outputs = json.loads(hostnames.out)["machines"]
    assert {n: r["stdout"].strip() for n, r in outputs.items()} == {"alpha": "alpha", "bravo": "bravo"}
    # One argument is a shell command line; several are words, quoted as such.
    failing = run("exec", "alpha", "bravo", "--", 'test "$(hostname)" = alpha')
    assert failing.code == 1 and "--- alpha: exit 0" in failing.out and "--- bravo: exit 1" in failing.out
    assert "failed on: bravo" in failing.err
    words = run("exec", "alpha", "--", "echo", "$(hostname)", "it's")
    assert words.code == 0 and "$(hostname) it's" in words.out

    config = isolated_home / "ssh_config"
    config.write_text(run("ssh-config").out)
    plain = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "bravo", "cat", "/etc/hostname"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and plain.stdout.strip() == "bravo", plain.stderr
    via_labctl = labctl_process("ssh", "alpha", "--", "sudo -n true && echo sudo-ok")
    assert via_labctl.returncode == 0 and via_labctl.stdout.strip() == "sudo-ok", via_labctl.stderr

    assert run("halt").code == 0
    assert {m["state"] for m in json.loads(run("status", "--json").out)["machines"]} == {"shutoff"}
    down = run("exec", "--all", "--", "true")
    assert down.code == 2 and "not running: alpha, bravo" in down.err

    assert run("resume", "alpha").code == 0
    states = {m["name"]: m["state"] for m in json.loads(run("status", "--json").out)["machines"]}
    assert states == {"alpha": "running", "bravo": "shutoff"}
    assert run("exec", "alpha", "--", "true").code == 0

    again = run("up", "--json")  # idempotent: starts only what is not running
    assert again.code == 0, again.err
    assert "alpha: booting" not in again.err

    destroyed = run("destroy", "-y")
    assert destroyed.code == 0, destroyed.err
    after = libvirt_names()
    assert not {n for n in after["domains"] if lab_name in n}
    assert not {n for n in after["networks"] if lab_name in n}
    new_volumes = after["volumes"] - before["volumes"]
    assert all("_vagrant_box_image_" in v for v in new_volumes), new_volumes  # the box's base image aside
    assert json.loads(run("list", "--json").out) == {"format": 1, "labs": []}


def test_sigterm_during_up_then_up_finishes(run: Callable[..., Result], isolated_home: Path, lab_name: str) -> None:
    """SIGTERM while vagrant creates the machine: labctl stops within seconds, vagrant with it, and
    the next `labctl up` finishes the lab."""
    import signal
    import threading
    import time

    (isolated_home / "lab.yaml").write_text(
        f"name: {lab_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\nmachines:\n"
        "  - {name: alpha}\n")
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "up", "--no-stack"], cwd=isolated_home,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    booting = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "Waiting for domain to get an IP address" in line:
                booting.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert booting.wait(180), "".join(seen)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, "".join(seen)
    assert time.monotonic() - stopped < 45
    reader.join(5)
    assert "terminated" in "".join(seen)
    leftover = subprocess.run(["pgrep", "-af", "vagrant up"], capture_output=True, text=True).stdout
    assert lab_name not in leftover and "--no-provision" not in leftover, leftover

    again = run("up", "--no-stack", "--json")
    assert again.code == 0, again.err
    assert [m["state"] for m in json.loads(again.out)["machines"]] == ["running"]

    # The lab's folder lost (records and Vagrant's state): destroy still finds its machines in libvirt.
    shutil.rmtree(Path(json.loads(again.out)["dir"]))
    (isolated_home / "lab.yaml").unlink()
    gone = run("destroy", "-y", "--lab", lab_name)
    assert gone.code == 0, gone.err
    after = libvirt_names()
    assert not [n for n in after["domains"] | after["networks"] if lab_name in n]
    assert not [v for v in after["volumes"] if lab_name in v]


def test_sigkill_during_up_is_explained_and_repaired(run: Callable[..., Result], isolated_home: Path,
                                                     lab_name: str) -> None:
    """labctl SIGKILLed while vagrant creates the machine: vagrant goes on alone. The next `up` says
    so instead of failing on vagrant's lock, and `destroy` stops it and removes everything."""
    import signal
    import threading

    (isolated_home / "lab.yaml").write_text(
        f"name: {lab_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\nmachines:\n"
        "  - {name: alpha}\n")
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "up", "--no-stack"], cwd=isolated_home,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    booting = threading.Event()
    seen: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "Creating domain" in line or "Waiting for domain" in line:
                booting.set()

    threading.Thread(target=read, daemon=True).start()
    assert booting.wait(180), "".join(seen)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    again = run("up", "--no-stack")
    assert again.code == 1, again.out + again.err
    assert "is still running, left by a labctl that was killed" in again.err and "kill -INT" in again.err

    gone = run("destroy", "-y")
    assert gone.code == 0, gone.err
    assert "stopping the `vagrant up`" in gone.out
    after = libvirt_names()
    assert not [n for n in after["domains"] | after["networks"] if lab_name in n]
    assert not [v for v in after["volumes"] if lab_name in v]
    assert "--no-provision" not in subprocess.run(["pgrep", "-af", "vagrant up"], capture_output=True,
                                                  text=True).stdout


def _libvirtd(action: str) -> None:
    """Stop or start the host's libvirtd the way install.sh started it (systemd, or by hand)."""
    import time

    systemd = Path("/run/systemd/system").is_dir()
    if action == "stop":
        if systemd:  # its sockets too, or the next connection starts it again
            subprocess.run(["systemctl", "stop", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
                            "libvirtd"], check=True)
        else:
            subprocess.run(["pkill", "-TERM", "-x", "libvirtd"], check=True)
        for _ in range(100):
            if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode == 1:
                return
            time.sleep(0.1)
        raise AssertionError("libvirtd did not stop")
    if systemd:
        subprocess.run(["systemctl", "start", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
                        "libvirtd"], check=True)
    else:
        subprocess.run(["libvirtd", "-d"], check=True)
    from labctl.adapters import hypervisor
    from labctl.errors import LabctlError

    for _ in range(100):
        try:
            hypervisor.connect().close()
            return
        except LabctlError:
            time.sleep(0.2)
    raise AssertionError("libvirtd did not come back")


def test_faults_during_stack_then_up_finishes(run: Callable[..., Result], isolated_home: Path, lab_name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults caused for real on real VMs, each followed by what must hold:
    1. `labctl stack` SIGTERMed, then `labctl up` SIGKILLed, during stack.sh: `status` says
       interrupted; the next `up` stops the stack.sh left behind and stacks both machines.
    2. a VM powered off (`virsh destroy`) during stack.sh: that machine fails, saying the connection
       was lost, the other finishes; the next `up` starts it again and stacks it, and only it.
    3. libvirtd stopped in the middle of `halt`: one line saying how to start it, no traceback;
       with libvirtd back, the machines are all there and `halt` finishes."""
    import signal
    import threading
    import time

    from labctl.adapters.ssh import Session

    repo = make_repo(isolated_home / "devstack")
    fragments = isolated_home / "local.conf.d"
    fragments.mkdir()
    slow = "[[local|localrc]]\nSTANDIN_PHASE_SECONDS=30\n"
    (fragments / "all.conf").write_text(slow)
    (isolated_home / "lab.yaml").write_text(
        f"name: {lab_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
        f"machines:\n  - {{name: alpha}}\n  - {{name: bravo}}\ndevstack:\n  repo: {repo}\n")
    up = run("up", "--no-stack", "--json")
    assert up.code == 0, up.err
    lab_dir = Path(json.loads(up.out)["dir"])

    def started(machine: str, phase: str = "Installing package prerequisites") -> bool:
        log = lab_dir / "logs" / machine / "stack.log"
        return log.exists() and f"echo_summary '{phase}'" in log.read_text()

    def devstack() -> dict[str, str]:
        return {m["name"]: m["devstack"] for m in json.loads(run("status", "--json").out)["machines"]}

    def stack_then(sig: signal.Signals, command: str) -> int:
        proc = subprocess.Popen([sys.executable, "-m", "labctl", command], cwd=isolated_home,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not (started("alpha") and started("bravo")):
            assert proc.poll() is None and time.monotonic() < deadline, "stack.sh did not start in both machines"
            time.sleep(0.5)
        for machine in ("alpha", "bravo"):
            (lab_dir / "logs" / machine / "stack.log").unlink()  # so that the next wait sees the next run
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        assert time.monotonic() - sent < 15  # within seconds, not after stack.sh's remaining phases
        return code

    # 1. SIGTERM in the middle of `labctl stack`, then SIGKILL in the middle of `labctl up` (stacking
    #    the running machines). The second run first stops the stack.sh that the first one left
    #    behind (its sessions closed, it would die at its next line).
    assert stack_then(signal.SIGTERM, "stack") == 143
    assert devstack() == {"alpha": "interrupted", "bravo": "interrupted"}
    assert stack_then(signal.SIGKILL, "up") == -signal.SIGKILL
    assert devstack() == {"alpha": "interrupted", "bravo": "interrupted"}
    left = run("exec", "--all", "--json", "--", "pgrep -u stack -c -f '[s]tack.sh'")
    assert all(r["exit_code"] == 0 for r in json.loads(left.out)["machines"].values()), left.out  # left running, unread

    # 2. The next `up` stops the leftovers; alpha stacks fast; bravo is powered off mid-stack.
    (fragments / "all.conf").write_text("[[local|localrc]]\nSTANDIN_PHASE_SECONDS=0.1\n")
    (fragments / "bravo.conf").write_text(slow)
    # Noticed within 5 + 20 s instead of the real 15 + 60 s, to keep CI short; same mechanism.
    monkeypatch.setattr(Session, "KEEPALIVE", 5)
    monkeypatch.setattr(Session, "DEAD_AFTER", 20)
    powered_off: list[float] = []

    def power_off_bravo() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not started("bravo"):
            time.sleep(0.5)
        subprocess.run(["virsh", "-c", "qemu:///system", "destroy", f"labctl-{lab_name}-bravo"], check=True,
                       capture_output=True)
        powered_off.append(time.monotonic())

    killer = threading.Thread(target=power_off_bravo)
    killer.start()
    second = run("up", "--json")
    killer.join()
    assert powered_off, "bravo's stack.sh never started"
    assert second.code == 1, second.err
    assert time.monotonic() - powered_off[0] < 90
    assert second.err.count("stopped the DevStack run that an interrupted labctl left running") == 2, second.err
    results = json.loads(second.out)["devstack"]["machines"]
    assert results["alpha"]["status"] == "ok"
    assert results["bravo"]["status"] == "failed" and "lost the connection" in results["bravo"]["message"]
    assert devstack() == {"alpha": "stacked", "bravo": "failed at Installing package prerequisites"}

    (fragments / "bravo.conf").unlink()
    third = run("up", "--json")
    assert third.code == 0, third.err
    assert {n: r["status"] for n, r in json.loads(third.out)["devstack"]["machines"].items()} == {"bravo": "ok"}
    assert devstack() == {"alpha": "stacked", "bravo": "stacked"}

    # 3. libvirtd stopped while `halt` waits for alpha, whose shutdown takes 40 s.
    unit = "[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep 40\nTimeoutStopSec=90\n"
    slow_stop = run("exec", "alpha", "--", f"printf '{unit}' | sudo tee /etc/systemd/system/slow-stop.service"
                    " >/dev/null && sudo systemctl daemon-reload && sudo systemctl start slow-stop")
    assert slow_stop.code == 0, slow_stop.out + slow_stop.err
    halt = subprocess.Popen([sys.executable, "-m", "labctl", "halt", "alpha"], cwd=isolated_home,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(5)
    assert halt.poll() is None, halt.communicate()
    try:
        _libvirtd("stop")
        out, err = halt.communicate(timeout=60)
    finally:
        _libvirtd("start")
    assert halt.returncode == 1, out + err
    message = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "libvirt" in err and "libvirtd" in err, err
    assert len(message) <= 3, err  # the error and its hint, not a dump
    after = {m["name"]: m["state"] for m in json.loads(run("status", "--json").out)["machines"]}
    assert set(after) == {"alpha", "bravo"} and after["bravo"] == "running", after
    assert run("halt").code == 0
    assert {m["state"] for m in json.loads(run("status", "--json").out)["machines"]} == {"shutoff"}

    gone = run("destroy", "-y")
    assert gone.code == 0, gone.err
    assert not [n for n in libvirt_names()["domains"] if lab_name in n]


USER = "labctl-e2e"


def test_ordinary_user_in_the_libvirt_group(vm_env: Path, lab_name: str) -> None:
    """Least privilege: an ordinary user in the libvirt group, with no sudo, brings a lab up,
    reaches its machine over SSH and destroys it; everything labctl writes belongs to that user."""
    import os
    import pwd
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("making a test user needs root (CI runs as root)")
    try:
        pwd.getpwnam(USER)
        made_user = False
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/bash", "--groups", "libvirt", USER],
                       check=True)
        made_user = True
    base = Path(tempfile.mkdtemp(prefix="labctl-user-", dir="/var/tmp"))
    try:
        for d in ("home", "work", "cache/boxes"):
            (base / d).mkdir(parents=True)
        box = vm_env / "cache" / "boxes" / "debian-12-amd64.box"
        if not box.is_file():  # built by the tests before; else built here, as root, into the cache
            built = subprocess.run([sys.executable, "-m", "labctl", "box", "build", "debian"], capture_output=True,
                                   text=True, env={**os.environ, "LABCTL_CACHE": str(vm_env / "cache")})
            assert built.returncode == 0, built.stderr
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(base)], check=True)
        # The same file (root's, readable): vagrant-libvirt finds its volume already in libvirt.
        os.link(box, base / "cache" / "boxes" / box.name)
        (base / "work" / "lab.yaml").write_text(
            f"name: {lab_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
            "machines:\n  - {name: alpha}\n")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base / "home"), "LANG": "C.UTF-8",
               "LABCTL_HOME": str(base / "labctl"), "VAGRANT_HOME": str(base / "vagrant.d"),
               "LABCTL_CACHE": str(base / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}

        def as_user(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                                   *argv], cwd=base / "work", capture_output=True, text=True, timeout=timeout)

        usable = as_user(sys.executable, "-c", "import labctl")
        assert usable.returncode == 0, f"the test user cannot run labctl's Python: {usable.stderr}"
        assert as_user("sudo", "-n", "true").returncode != 0  # truly unprivileged
        reach = as_user("virsh", "-c", "qemu:///system", "list")
        assert reach.returncode == 0, f"the libvirt group cannot reach libvirtd (install.sh sets it up): {reach.stderr}"

        up = as_user(sys.executable, "-m", "labctl", "up", "--no-stack", "--json")
        assert up.returncode == 0, up.stderr
        assert [m["state"] for m in json.loads(up.stdout)["machines"]] == ["running"]
        who = as_user(sys.executable, "-m", "labctl", "exec", "alpha", "--", "id -un")
        assert who.returncode == 0 and "vagrant" in who.stdout, who.stdout + who.stderr
        written = [*(base / "labctl").rglob("*"), *(base / "cache").rglob("*"), *(base / "vagrant.d").rglob("*")]
        owners = {p.owner() for p in written if p.name != box.name}
        assert owners == {USER}, owners
        gone = as_user(sys.executable, "-m", "labctl", "destroy", "-y")
        assert gone.returncode == 0, gone.stderr
        assert not [n for n in libvirt_names()["domains"] if lab_name in n]
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if made_user:  # nothing of the test left on the machine
            subprocess.run(["userdel", USER], check=False, capture_output=True)
