"""Every rendered Vagrantfile must pass the real `vagrant validate` with vagrant-libvirt loaded."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, require_tool
from labctl.catalog import default_catalog

pytestmark = pytest.mark.vagrant
RELEASES = [r.ref for r in default_catalog().releases()]


def validate(folder: Path) -> subprocess.CompletedProcess[str]:
    vagrant = require_tool("vagrant")
    return subprocess.run([vagrant, "validate"], cwd=folder, capture_output=True, text=True, timeout=120)


def planned_dir(run: Callable[..., Result], *argv: str) -> Path:
    import json

    result = run("plan", "--json", *argv)
    assert result.code == 0, result.err
    return Path(json.loads(result.out)["dir"])


@pytest.mark.parametrize("ref", RELEASES)
def test_each_release_validates(run: Callable[..., Result], ref: str) -> None:
    folder = planned_dir(run, "--distro", ref)
    proc = validate(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


def test_multimachine_lab_validates(run: Callable[..., Result], isolated_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text(
        "name: class\ndefaults: {memory: 4G, cpus: 1, disk: 20G}\naccelerator: kvm\nmachines:\n"
        "  - {name: ctl, role: controller, memory: 8G}\n  - {name: cmp, role: compute, count: 2}\n"
        "  - {name: other, distro: ubuntu:24.04, role: allinone}\n")
    folder = planned_dir(run, "-f", "lab.yaml")
    proc = validate(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (folder / "Vagrantfile").read_text()
    assert text.count("config.vm.define") == 4


def test_validate_catches_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a provider setting vagrant-libvirt does not know is refused."""
    (tmp_path / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |c|\n  c.vm.box = "x/y"\n'
        '  c.vm.provider :libvirt do |l|\n    l.no_such_setting = 1\n  end\nend\n')
    proc = validate(tmp_path)
    assert proc.returncode != 0
    assert "no_such_setting" in proc.stdout + proc.stderr


def test_machines_on_another_host_validate(tmp_path: Path) -> None:
    """A machine placed on a host over SSH: Vagrant opens that host's libvirt through labctl's
    transport and reaches the machine through the host (vagrant-libvirt keeps the ProxyCommand only
    with connect_via_ssh, and needs a host in the URI for it)."""
    from dataclasses import replace

    from labctl.host import HostFacts, choose_accelerator
    from labctl.hosts.inventory import HostEntry
    from labctl.hosts.transport import route
    from labctl.labfile import lab_from_dict
    from labctl.render import render_vagrantfile
    from labctl.resources import data_path

    machines = [{"name": "here", "memory": "1G"}, {"name": "far", "memory": "1G"}]
    lab = lab_from_dict({"name": "duo", "machines": machines}, default_catalog())
    lab = replace(lab, machines=(lab.machines[0], replace(lab.machines[1], host="rack2")))
    entry = HostEntry("rack2", "qemu+ssh://labctl@192.0.2.7:2222/system", ssh_key=tmp_path / "key")
    routes = {"rack2": route(entry, tmp_path / "home")}
    accel = choose_accelerator("auto", HostFacts(2, 4096, frozenset(), False))
    text = render_vagrantfile(data_path("Vagrantfile.j2").read_text(), lab, accel, routes)
    (tmp_path / "Vagrantfile").write_text(text)
    proc = validate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    far = text[text.index("config.vm.define 'far'"):]
    assert f"libvirt.uri = 'qemu+ext://rack2/system?command={tmp_path}/home/hosts/rack2.ssh'" in far
    assert "libvirt.connect_via_ssh = true" in far and "-W %h:%p'" in far
    assert "libvirt.uri" not in text[:text.index("config.vm.define 'far'")]


def test_a_machine_made_from_a_stacked_image_has_no_box_and_validates(tmp_path: Path) -> None:
    """A machine booted straight from a stacked image (labctl.stacking.images): no box, its disk the
    volume labctl made (an overlay on the image), booted from it; its neighbour keeps its box. A
    hostile volume name stays one Ruby string."""
    from labctl.host import HostFacts, choose_accelerator
    from labctl.labfile import lab_from_dict
    from labctl.render import render_vagrantfile
    from labctl.resources import data_path

    machines = [{"name": "ks", "memory": "1G"}, {"name": "other", "memory": "1G"}]
    lab = lab_from_dict({"name": "duo", "machines": machines},
                        default_catalog())
    accel = choose_accelerator("auto", HostFacts(2, 4096, frozenset(), False))
    text = render_vagrantfile(data_path("Vagrantfile.j2").read_text(), lab, accel,
                              straight={"ks": "labctl-duo-ks.img'\nsystem('id')#"})
    (tmp_path / "Vagrantfile").write_text(text)
    proc = validate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ks, other = text[text.index("config.vm.define 'ks'"):text.index("config.vm.define 'other'")], \
        text[text.index("config.vm.define 'other'"):]
    assert "node.vm.box" not in ks and "machine_virtual_size" not in ks and "libvirt.boot 'hd'" in ks
    assert "libvirt.storage :file, path: \"labctl-duo-ks.img'\\u{a}system('id')\\#\", allow_existing: true" in ks
    assert "node.vm.box = " in other and "libvirt.storage" not in other
