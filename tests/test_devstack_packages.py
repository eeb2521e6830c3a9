"""What stack.sh will install with apt, known before it runs (labctl.devstack_packages), and the
DevStack-ready box that holds it: held to the real DevStack of ../shared/mirrors and to the apt-get
lines of real stack.sh runs (../shared/devstack-logs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, leave_nothing
from labctl.devstack_packages import devstack_packages, package_files, parse_package_file, read_debs
from labctl.devstack_python import PythonSet

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEVSTACK = SHARED / "mirrors" / "openstack" / "devstack.git"
COMPUTE = ("key", "mysql", "rabbit", "n-api", "n-cpu", "n-cond", "n-sch", "n-api-meta", "placement-api",
           "placement-client", "g-api", "ovn-controller", "ovn-northd", "ovs-vswitchd", "ovsdb-server", "q-svc",
           "q-ovn-agent")


def need_shared(path: Path) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI has ../shared/ beside the clone")
        pytest.skip(f"{path} is not there")


def test_the_list_is_what_the_real_stack_installed() -> None:
    """stack.sh's own `apt-get install` lines of the two real keystone-only runs (DevStack master,
    ENABLED_SERVICES=key,mysql, Debian 12): the same packages, not one more or less."""
    logs = SHARED / "devstack-logs"
    need_shared(logs)
    need_shared(DEVSTACK)
    installed: set[str] = set()
    for log in logs.glob("keystone-only-*.log"):
        for found in re.finditer(r"apt-get --option Dpkg::Options::=--force-confold --assume-yes install (.*)",
                                 log.read_text()):
            installed |= set(found.group(1).split())
    assert "mariadb-server" in installed and "apache2" in installed  # the log is read
    # Those runs had DevStack's default ENABLE_KSMTUNED=True (labctl now sets it false).
    mine = devstack_packages(read_debs(DEVSTACK, "master"), ["key", "mysql"], "bookworm", ksmtuned=True)
    assert set(mine) == installed and len(mine) == len(set(mine))


def test_the_compute_stack_gets_its_services_packages() -> None:
    need_shared(DEVSTACK)
    debs = read_debs(DEVSTACK, "stable/2026.1")
    packages = devstack_packages(debs, COMPUTE, "bookworm")
    for wanted in ("mariadb-server", "rabbitmq-server", "libvirt-daemon-system", "qemu-system", "ovn-central",
                   "ovn-host", "openvswitch-switch", "conntrack", "haproxy", "uwsgi-plugin-python3", "python3.11-dev"):
        assert wanted in packages
    # NOPRIME lines are stack.sh's to install later, or never; dist:precise is not bookworm.
    for unwanted in ("qemu-kvm", "lvm2", "python3-guestfs", "mysql-server", "radvd", "default-jre-headless",
                     "open-iscsi-utils"):
        assert unwanted not in packages
    assert package_files(["n-api", "n-cpu", "q-svc", "key"]) == [
        "general", "n-api", "nova", "glance", "os-brick", "n-cpu", "q-svc", "neutron-common", "key", "keystone"]
    assert devstack_packages(debs, ["key"], "trixie")[:2] == ["python3.13", "python3.13-dev"]


def test_marks_and_hostile_lines() -> None:
    text = ("apache2\nqemu-kvm # NOPRIME\nold-tool # dist:precise,bionic\nnew-tool  # dist:bookworm,trixie\n"
            "not-here # not:bookworm\nhere # not:jammy\n$(reboot)\n-oAPT::Get::AllowUnauthenticated=1\n"
            "a;b\nUPPER\n")
    assert parse_package_file(text, "bookworm") == [
        "apache2", "new-tool", "here", "$(reboot)", "-oAPT::Get::AllowUnauthenticated=1", "a;b", "UPPER"]
    # ...and none of the words that are no Debian package name reaches apt or mmdebstrap.
    assert devstack_packages({"general": text}, [], "bookworm", ksmtuned=True) == [
        "python3.11", "python3.11-dev", "ksmtuned", "apache2", "new-tool", "here"]
    assert "ksmtuned" not in devstack_packages({"general": text}, [], "bookworm")  # labctl's default


def test_a_strangers_mirror_is_read_without_its_config_or_big_files(tmp_path: Path) -> None:
    """A bare repository with a hook and a config that would run a command, no refs/ folder (as some
    copies have), a huge file and odd names in files/debs: the lists are read, nothing runs."""
    work = tmp_path / "work"
    (work / "files" / "debs").mkdir(parents=True)
    (work / "files" / "debs" / "general").write_text("git\ncurl\n")
    (work / "files" / "debs" / "huge").write_text("x\n" * 40_000)
    (work / "files" / "debs" / "$(touch pwned)").write_text("evil\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run([*git, "init", "-q", "-b", "master"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "debs"], check=True)
    bare = tmp_path / "devstack.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "--git-dir", str(bare), "pack-refs", "--all"], check=True)
    marker = tmp_path / "ran"
    with (bare / "config").open("a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {marker}\n[alias]\n\tls-tree = !touch {marker}\n")
    hook = bare / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    for folder in (bare / "refs" / "heads", bare / "refs" / "tags"):
        folder.rmdir()
    (bare / "refs").rmdir()
    assert read_debs(bare, "master") == {"general": "git\ncurl\n"}
    assert not marker.exists()


def test_up_boots_a_devstack_ready_box_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`devstack.preinstall: true`: `up` builds the Debian box with what this lab's stack.sh installs,
    named after those packages, and the Vagrantfile boots it; a second `up` builds nothing. The build
    itself is replaced here (mmdebstrap of ~90 packages takes minutes, and needs root): it is run for
    real by tests/test_devstack_packages.py::test_the_devstack_ready_box_is_built_for_real."""
    need_shared(DEVSTACK)
    from fakes import FakeHost, FakeVagrant
    from test_usecases import HOST, Reporter, context

    from labctl import boxbuild
    from labctl.catalog import default_catalog
    from labctl.labfile import lab_from_dict
    from labctl.lifecycle import up_lab

    built: list[boxbuild.BoxSpec] = []

    def build(spec: boxbuild.BoxSpec, **_: object) -> Path:
        built.append(spec)
        spec.file.parent.mkdir(parents=True, exist_ok=True)
        spec.file.write_bytes(b"box")
        return spec.file

    monkeypatch.setattr(boxbuild, "build_box", build)
    raw = {"name": "dev", "defaults": {"distro": "debian:12", "memory": "8G", "cpus": 2},
           "machines": [{"name": "one"}],
           "devstack": {"git_base": str(SHARED / "mirrors"), "branch": "stable/2026.1", "preinstall": True,
                        "localrc": {"ENABLED_SERVICES": ",".join(COMPUTE)}}}
    host = FakeHost()
    vagrant = FakeVagrant(host, lab="dev")
    ctx = context(tmp_path, host, vagrant)
    reporter = Reporter()
    plan, _ = up_lab(lab_from_dict(raw, default_catalog()), None, ctx, HOST, reporter,  # type: ignore[arg-type]
                     "http://deb.debian.org/debian")
    [spec] = built
    assert "rabbitmq-server" in spec.packages and "ovn-central" in spec.packages
    assert spec.name.startswith("labctl/debian-12-devstack-") and ("box_add", spec.name) in vagrant.calls
    assert f"node.vm.box = '{spec.name}'" in plan.vagrantfile.read_text()
    assert any(f"building box {spec.name} with the {len(spec.packages)} packages" in line for line in reporter.lines)
    up_lab(lab_from_dict(raw, default_catalog()), None, ctx, HOST, Reporter(),  # type: ignore[arg-type]
           "http://deb.debian.org/debian")
    assert len(built) == 1


def test_preinstall_needs_devstack_on_this_host() -> None:
    from labctl.catalog import default_catalog
    from labctl.errors import LabFileError
    from labctl.labfile import lab_from_dict

    raw = {"name": "dev", "machines": [{"name": "one"}], "devstack": {"preinstall": True}}
    with pytest.raises(LabFileError, match=r"devstack\.preinstall: .* devstack\.repo is a URL") as refused:
        lab_from_dict(raw, default_catalog())
    assert "git_base" in (refused.value.hint or "")
    with pytest.raises(LabFileError, match=r"devstack\.preinstall"):
        lab_from_dict({**raw, "devstack": {"preinstall": "yes"}}, default_catalog())


def debugfs(image: Path, request: str) -> str:
    """Read the box's ext4 disk without mounting it (no root, no loop device): e2fsprogs' debugfs."""
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True,
                          check=True).stdout


def venv_checks(disk: Path, python: PythonSet, log: str) -> None:
    """DevStack's virtualenv in the box's disk: the stack user's, the projects' requirements in it at
    their pinned versions, what had no wheel left to stack.sh (no stand-in record of it left), and
    nothing of the build (the host's CAs, the lists) left behind."""
    site = next(line.split()[-1] for line in debugfs(disk, "ls -l /opt/stack/data/venv/lib").splitlines()
                if "python3" in line)
    listing = debugfs(disk, f"ls /opt/stack/data/venv/lib/{site}/site-packages")
    infos = {i.lower() for i in re.findall(r"([A-Za-z0-9_.]+-[^\s]+)\.dist-info", listing)}
    pinned = {re.split("===", c)[0].lower().replace("-", "_").replace(".", "_"): c.split("===")[1].split(";")[0]
              for c in python.constraints if "===" in c}
    for name in ("oslo_config", "keystonemiddleware", "sqlalchemy", "python_openstackclient", "ovsdbapp"):
        assert f"{name}-{pinned[name]}".lower() in infos, (name, sorted(infos)[:20])
    left = re.findall(r"devstack-venv.sh: (\S+) \S+ has no wheel: left to stack.sh", log)
    for name in left:
        assert not any(i.startswith(name.lower().replace("-", "_") + "-") for i in infos), name
    owner = re.search(r"User:\s+(\d+)", debugfs(disk, "stat /opt/stack/data/venv/bin/pip"))
    stack_uid = re.search(r"^stack:x:(\d+):", debugfs(disk, "cat /etc/passwd"), re.MULTILINE)
    assert owner and stack_uid and owner.group(1) == stack_uid.group(1)
    assert "File not found" in subprocess.run(["debugfs", "-R", "stat /tmp/labctl-venv", str(disk)],
                                              capture_output=True, text=True, check=False).stderr


@pytest.mark.devstack_box
@pytest.mark.vm
def test_the_devstack_ready_box_is_built_for_real(vm_env: Path, tmp_path: Path, isolated_home: Path,
                                                  run: Callable[..., Result]) -> None:
    """mmdebstrap of the compute stack's packages, natively, into the box the compute test's `up`
    boots (the test cache's, so that it builds nothing then); its disk read back: the packages are
    installed, what they made as secrets is gone and made again at first boot, the services that take
    the host's name wait for the machine's own. Then `labctl up --no-stack` boots it for real."""
    import tarfile

    from test_usecases import HOST

    from labctl.boxbuild import box_spec, build_box
    from labctl.catalog import default_catalog
    from labctl.devstack_packages import box_packages
    from labctl.devstack_python import python_sets
    from labctl.lab import render_lab
    from labctl.labfile import lab_from_dict
    from labctl.state import LabHome

    need_shared(DEVSTACK)
    raw = {"name": "box", "machines": [{"name": "one", "distro": "debian:12"}],
           "devstack": {"git_base": str(SHARED / "mirrors"), "branch": "stable/2026.1", "preinstall": True,
                        "localrc": {"ENABLED_SERVICES": ",".join(COMPUTE)}}}
    lab = lab_from_dict(raw, default_catalog())
    rendered = render_lab(lab, LabHome(tmp_path / "home"), HOST)
    [(box, packages)] = box_packages(rendered.lab, rendered.local_confs).items()
    [python] = python_sets(rendered.lab, rendered.local_confs).values()
    spec = box_spec(rendered.lab.machines[0].release, vm_env / "cache", packages, python)
    steps: list[str] = []
    build_box(spec, mirror=os.environ.get("LABCTL_TEST_MIRROR", "http://deb.debian.org/debian"), step=steps.append,
              log=tmp_path / "build.log")
    assert steps[0].endswith(f"and the {len(spec.packages)} packages DevStack installs")
    assert steps[1] == f"and DevStack's virtualenv: {len(python.requirements)} requirements, wheels only"
    with tarfile.open(spec.file) as tar, (tmp_path / "box.img").open("wb") as out:
        image = tar.extractfile("box.img")
        assert image is not None
        shutil.copyfileobj(image, out)
    disk = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(tmp_path / "box.img"), str(disk)], check=True)
    status = debugfs(disk, "cat /var/lib/dpkg/status")
    stanzas = [dict(re.findall(r"^([A-Za-z-]+): (.*)$", block, re.MULTILINE)) for block in status.split("\n\n")]
    installed = {st["Package"] for st in stanzas if st.get("Status") == "install ok installed"}
    assert not set(packages) - installed, set(packages) - installed
    gone = ("/var/lib/rabbitmq/.erlang.cookie", "/etc/ssl/private/ssl-cert-snakeoil.key", "/etc/openvswitch/conf.db",
            "/var/lib/systemd/random-seed")
    for path in gone:
        assert "File not found" in subprocess.run(["debugfs", "-R", f"stat {path}", str(disk)], capture_output=True,
                                                  text=True, check=False).stderr, path
    assert "ConditionPathExists=!/etc/ssl/private/ssl-cert-snakeoil.key" in debugfs(
        disk, "cat /etc/systemd/system/labctl-snakeoil.service")
    assert "labctl-snakeoil.service" in debugfs(disk, "ls /etc/systemd/system/multi-user.target.wants")
    for unit in ("rabbitmq-server", "ovn-central", "openvswitch-switch"):
        drop_in = f"/etc/systemd/system/{unit}.service.d/labctl-named.conf"
        assert "ConditionHost=!labctl-box" in debugfs(disk, f"cat {drop_in}")
    assert debugfs(disk, "cat /etc/machine-id") == ""
    venv_checks(disk, python, (tmp_path / "build.log").read_text())
    assert box == rendered.lab.machines[0].box

    # Booted: the machine has its own snakeoil key and its own name, and RabbitMQ did not start under
    # the box's name (stack.sh starts it, as on a machine where apt just installed it).
    name = f"box-{os.getpid() % 10000}"
    (isolated_home / "lab.yaml").write_text(json.dumps({**raw, "name": name, "defaults": {"memory": "4G", "cpus": 2}}))
    try:
        up = run("up", "--no-stack", "--json")
        assert up.code == 0, up.err[-3000:]
        assert f"using the DevStack-ready box {spec.name}" in up.err or f"adding box {spec.name}" in up.err
        checks = ("hostname; sudo test -s /etc/ssl/private/ssl-cert-snakeoil.key && echo snakeoil;"
                  " systemctl is-active rabbitmq-server || true; systemctl is-active mariadb apache2 || true;"
                  " cat /etc/machine-id")
        inside = run("exec", "one", "--", checks)
        assert inside.code == 0, inside.err
        lines = " ".join(x for x in inside.out.splitlines() if not x.startswith("--- one:")).split()
        assert lines[:3] == ["one", "snakeoil", "inactive"] and lines[3:5] == ["active", "active"], inside.out
        assert len(lines[5]) == 32
    finally:
        leave_nothing(name, ["one"])


def test_the_box_holds_ksmtuned_only_where_the_lab_wants_it(tmp_path: Path) -> None:
    """labctl's base.conf turns DevStack's ksmtuned off (6 to 9 minutes of apt under software
    emulation for a keystone-only stack); a lab that turns it back on gets it in its box too."""
    from test_usecases import HOST

    from labctl.catalog import default_catalog
    from labctl.devstack_packages import box_packages
    from labctl.lab import render_lab
    from labctl.labfile import lab_from_dict
    from labctl.state import LabHome

    need_shared(DEVSTACK)
    for localrc, wanted in (({}, False), ({"ENABLE_KSMTUNED": True}, True)):
        raw = {"name": "box", "machines": [{"name": "one", "distro": "debian:12"}],
               "devstack": {"git_base": str(SHARED / "mirrors"), "preinstall": True,
                            "localrc": {"ENABLED_SERVICES": "key,mysql", **localrc}}}
        rendered = render_lab(lab_from_dict(raw, default_catalog()), LabHome(tmp_path / str(wanted)), HOST)
        assert ("ENABLE_KSMTUNED=False" in rendered.local_confs["one"]) is not wanted
        [(_box, packages)] = box_packages(rendered.lab, rendered.local_confs).items()
        assert ("ksmtuned" in packages) is wanted


def test_a_box_build_cut_short_leaves_nothing_mounted(tmp_path: Path) -> None:
    """mmdebstrap mounts /dev, /proc and /sys in the root filesystem while its hooks run; one cut short
    (a signal to its process group, seen here) left them mounted, and `rm --one-file-system` left
    their folders. The build's end unmounts what is mounted in its folder, deepest first: read from
    the kernel's table (names with spaces come octal-escaped), and for real where the test may mount."""
    from labctl.boxbuild import mounts_under

    work = tmp_path / ".build-x y"
    table = tmp_path / "mounts"
    table.write_text(f"proc {tmp_path}/.build-x\\040y/rootfs/proc proc ro 0 0\n"
                     f"sys {tmp_path}/.build-x\\040y/rootfs/sys sysfs ro 0 0\n"
                     f"tmpfs {tmp_path}/.build-x\\040y/rootfs/dev/shm tmpfs rw 0 0\n"
                     f"tmpfs {tmp_path}/.build-other/rootfs/proc tmpfs rw 0 0\n/dev/vda / ext4 rw 0 0\n")
    found = mounts_under(work, table)
    assert found[0] == work / "rootfs" / "dev" / "shm"
    assert set(found) == {work / "rootfs" / "proc", work / "rootfs" / "sys", work / "rootfs" / "dev" / "shm"}
    if os.geteuid() != 0:
        return
    point = work / "rootfs" / "proc"
    point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", str(point)], check=True)
    try:
        assert mounts_under(work) == [point]
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
    assert mounts_under(work) == []
