"""The vagrant driver: its output parser on captured text, and its failures with the real vagrant."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool
from labctl.adapters.vagrant import VagrantDriver, VagrantFailed, parse_progress
from labctl.protocols import VagrantMissing

CAPTURED_UP = """\
Bringing machine 'a' up with 'libvirt' provider...
Bringing machine 'b' up with 'libvirt' provider...
==> a: Creating image (snapshot of base box volume).
==> b: Creating domain with the following settings...
==> b:  -- Name:              labctl-t1-b
==> a: Waiting for domain to get an IP address...
    a: SSH address: 192.168.121.49:22
==> a: Machine booted and ready!
==> a: Setting hostname...
"""


def test_parse_progress_on_captured_output() -> None:
    steps = [s for line in CAPTURED_UP.splitlines() if (s := parse_progress(line))]
    assert steps == [("a", "Creating image (snapshot of base box volume)."),
                     ("b", "Creating domain with the following settings..."),
                     ("b", "-- Name:              labctl-t1-b"),
                     ("a", "Waiting for domain to get an IP address..."),
                     ("a", "Machine booted and ready!"), ("a", "Setting hostname...")]


@pytest.fixture
def driver(tmp_path: Path) -> VagrantDriver:
    require_tool("vagrant")
    (tmp_path / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |c|\n  c.vm.define "a" do |n|\n    n.vm.box = "x/y"\n  end\nend\n')
    return VagrantDriver(tmp_path, tmp_path / "logs" / "vagrant.log", "test:///default")


def test_failures_carry_vagrants_words(driver: VagrantDriver) -> None:
    with pytest.raises(VagrantFailed) as err:
        driver.up(["nosuchmachine"], lambda *_: None)
    assert "vagrant up failed" in err.value.message
    assert "nosuchmachine" in err.value.tail
    assert err.value.hint and str(driver.log) in err.value.hint


def test_validate_names_the_broken_setting(driver: VagrantDriver, tmp_path: Path) -> None:
    (tmp_path / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |c|\n  c.vm.box = "x/y"\n  c.vm.provider :libvirt do |l|\n'
        '    l.memoryy = 1\n  end\nend\n')
    with pytest.raises(VagrantFailed) as err:
        driver.validate(tmp_path)
    assert "memoryy" in err.value.tail


def test_plugin_present(driver: VagrantDriver) -> None:
    """Here vagrant-libvirt is installed (install.sh): the check lets it through (its refusal when the
    plugin is missing: test_plugin_missing_is_said)."""
    assert "vagrant-libvirt" in {p.name for p in driver._vagrant.plugin_list()}
    driver.check_plugin()  # raises VagrantMissing otherwise


def test_plugin_missing_is_said(driver: VagrantDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for `vagrant plugin list`: the Debian package's plugin cannot be removed from this
    # machine without breaking every other test that runs beside this one.
    monkeypatch.setattr(driver._vagrant, "plugin_list", lambda: [])
    with pytest.raises(VagrantMissing, match="vagrant-libvirt plugin is not installed"):
        driver.check_plugin()


def test_provider_not_loadable_is_said(driver: VagrantDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # VAGRANT_NO_PLUGINS is vagrant's own switch: it really runs without vagrant-libvirt loaded.
    monkeypatch.setenv("VAGRANT_NO_PLUGINS", "1")
    (tmp_path / "Vagrantfile").write_text('Vagrant.configure("2") do |c|\n  c.vm.box = "x/y"\n'
                                          '  c.vm.provider :libvirt do |l|\n    l.memory = 1\n  end\nend\n')
    with pytest.raises(VagrantMissing, match="vagrant-libvirt"):
        driver.validate(tmp_path)


def test_vagrant_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VagrantMissing, match="vagrant is not installed"):
        VagrantDriver(tmp_path, tmp_path / "log", "test:///default")


def _vagrant_standin(cwd: Path) -> subprocess.Popen[bytes]:
    """A process named like vagrant, working in `cwd`, as a killed labctl leaves one."""
    import time

    proc = subprocess.Popen(["bash", "-c", "exec -a vagrant-up-standin sleep 60"], cwd=cwd)
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    for _ in range(100):  # until bash has exec'd it
        if cmdline.read_bytes().startswith(b"vagrant-up-standin"):
            break
        time.sleep(0.05)
    return proc


def test_orphaned_vagrant_is_found_and_stopped(tmp_path: Path) -> None:
    from labctl import supervisor
    from labctl.adapters.vagrant import up_pid_file
    from labctl.lifecycle import orphan_up
    from labctl.state import LabDir

    lab_dir = LabDir("lab", tmp_path)
    assert up_pid_file(tmp_path) == lab_dir.vagrant_up  # where the adapter records it, the use-case looks
    assert orphan_up(lab_dir) is None
    proc = _vagrant_standin(tmp_path)
    supervisor.record(up_pid_file(tmp_path), proc.pid)
    try:
        assert orphan_up(lab_dir) == proc.pid
        supervisor.stop(proc.pid, 5, signal.SIGINT)
        assert proc.poll() is not None
    finally:
        proc.kill()
    assert orphan_up(lab_dir) is None and not lab_dir.vagrant_up.exists()  # a dead pid is forgotten
    other = subprocess.Popen(["sleep", "60"])  # alive, but not vagrant (a reused pid)
    try:
        lab_dir.vagrant_up.write_text(f"{other.pid} 0\n")
        assert orphan_up(lab_dir) is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("impostor", ["another lab's vagrant", "a reused pid"])
def test_destroy_never_names_a_process_that_is_not_the_labs_vagrant(tmp_path: Path, impostor: str) -> None:
    """Pids are reused: a vagrant of another folder, or any process that got the recorded pid after
    the lab's vagrant ended (its start time differs), is never taken for the lab's."""
    from labctl.lifecycle import orphan_up
    from labctl.state import LabDir
    from labctl.supervisor import start_ticks

    lab, elsewhere = tmp_path / "lab", tmp_path / "other-lab"
    lab.mkdir()
    elsewhere.mkdir()
    proc = _vagrant_standin(elsewhere if impostor == "another lab's vagrant" else lab)
    try:
        ticks = start_ticks(proc.pid) - (0 if impostor == "another lab's vagrant" else 1)
        LabDir("lab", lab).vagrant_up.write_text(f"{proc.pid} {ticks}\n")
        assert orphan_up(LabDir("lab", lab)) is None
        assert proc.poll() is None  # untouched
    finally:
        proc.kill()
        proc.wait()


def test_box_add_failure_carries_vagrants_words(driver: VagrantDriver, tmp_path: Path) -> None:
    bad = tmp_path / "broken.box"
    bad.write_text("not a box\n")
    with pytest.raises(VagrantFailed) as err:
        driver.box_add("labctl/broken", str(bad))
    assert err.value.message.startswith("vagrant box add failed (exit 1)")
    assert "failed to unpackage" in err.value.tail  # vagrant's own words, from the lab's vagrant.log


def test_a_boxs_volume_is_named_as_vagrant_libvirt_names_it_at_its_newest_version(tmp_path: Path) -> None:
    """The volume a machine made from box `labctl/debian-12` stands on, as vagrant-libvirt 0.11 names it
    (a real one on this host: labctl-VAGRANTSLASH-debian-12_vagrant_box_image_12.0.1796665995_box.img),
    of the newest version Vagrant has (numbers compared as numbers), for the libvirt provider only."""
    from labctl.adapters.vagrant import box_volume_name

    require_tool("vagrant")
    driver = VagrantDriver(tmp_path, tmp_path / "vagrant.log", "test:///default")
    listed = [("labctl/debian-12", "libvirt", "12.0.999"), ("labctl/debian-12", "libvirt", "12.0.1796665995"),
              ("labctl/debian-12", "virtualbox", "12.0.9999999999"), ("other", "libvirt", "99")]
    driver.box_list = lambda: listed  # type: ignore[method-assign]  # the real list is tested by the VM tests
    assert driver.box_volume("labctl/debian-12") == \
        "labctl-VAGRANTSLASH-debian-12_vagrant_box_image_12.0.1796665995_box.img"
    assert driver.box_volume("labctl/debian-13") is None
    assert box_volume_name("a/b/c", "1") == "a-VAGRANTSLASH-b-VAGRANTSLASH-c_vagrant_box_image_1_box.img"


def test_a_key_for_a_machine_vagrant_made_none_for(tmp_path: Path) -> None:
    """make_key writes a new key where Vagrant keeps a machine's (0600, in folders it makes), which
    labctl's SSH reads as any of Vagrant's; one that is there is never replaced."""
    from labctl.adapters.ssh import make_key, public_key

    key = tmp_path / ".vagrant" / "machines" / "dev1" / "libvirt" / "private_key"
    make_key(key)
    assert key.stat().st_mode & 0o777 == 0o600 and public_key(key).startswith("ssh-ed25519 ")
    before = key.read_bytes()
    make_key(key)
    assert key.read_bytes() == before
