"""`labctl up` checks the host before creating anything: each failure is one line with its fix."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, libvirt_names, require_libvirt, require_tool


def up_fails(run: Callable[..., Result], labctl_home: Path, *argv: str) -> str:
    before = libvirt_names() if not os.environ.get("LABCTL_LIBVIRT_URI") else None
    result = run("up", *argv)
    assert result.code == 2, result.out + result.err
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert lines[-2].startswith("labctl: error: ") and lines[-1].startswith("  hint: "), result.err
    assert not (labctl_home / "labs").exists(), "a failed preflight must not create the lab"
    if before is not None:
        assert libvirt_names() == before
    return result.err


def test_libvirtd_not_reachable(run: Callable[..., Result], labctl_home: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("vagrant")
    # A socket nobody listens on is what a stopped libvirtd looks like to a client.
    monkeypatch.setenv("LABCTL_LIBVIRT_URI", "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    err = up_fails(run, labctl_home, "--distro", "debian")
    assert "libvirt is not reachable" in err
    assert ("systemctl start libvirtd" in err) == Path("/run/systemd/system").is_dir()
    assert "libvirtd -d" in err or "systemctl" in err


def test_vagrant_libvirt_not_loadable(run: Callable[..., Result], labctl_home: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("vagrant")
    require_libvirt()
    monkeypatch.setenv("VAGRANT_NO_PLUGINS", "1")  # vagrant's own switch: runs with no plugin loaded
    err = up_fails(run, labctl_home, "--distro", "debian")
    assert "vagrant-libvirt" in err and "apt-get install vagrant-libvirt" in err


def test_vagrant_not_installed(run: Callable[..., Result], labctl_home: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    err = up_fails(run, labctl_home, "--distro", "debian")
    assert "vagrant is not installed" in err and "install.sh" in err


def test_lab_too_big_for_the_host(run: Callable[..., Result], labctl_home: Path, isolated_home: Path) -> None:
    require_tool("vagrant")
    require_libvirt()
    (isolated_home / "lab.yaml").write_text(
        "name: huge\ndefaults: {memory: 64G, cpus: 1, disk: 10G}\nmachines:\n  - {name: seat, count: 40}\n")
    err = up_fails(run, labctl_home)
    assert "not enough memory" in err and "40 x 65536 = 2621440 MiB" in err and "MiB available" in err


def test_classroom_too_big_says_how_many_seats_fit(run: Callable[..., Result], labctl_home: Path,
                                                   isolated_home: Path) -> None:
    require_tool("vagrant")
    require_libvirt()
    (isolated_home / "lab.yaml").write_text(
        "name: bigclass\ndefaults: {memory: 64G, cpus: 1, disk: 10G}\nclassroom: {seats: 40}\n")
    err = up_fails(run, labctl_home)  # before anything is created
    planned = run("plan", "--json")
    assert planned.code == 2 and "the class does not fit this host" in planned.err  # as up refused it
    fit = json.loads(planned.out)["classroom"]["fit"]
    assert (fit["seats"], fit["fits"]) == (40, False) and fit["fitting"] < 40
    assert fit["arithmetic"][0].startswith("memory: 40 seats x 65536 MiB = 2621440 MiB; this host has")
    assert f"does not fit: only {fit['fitting']} of the 40 seats to start would" in run("plan").out
    assert "40 x 65536 = 2621440 MiB" in err and f"{fit['fitting']} of the 40 seats to start would fit" in err


# ---------------------------------------------------------------------------------------------
# nested: true, KVM inside the machines


@pytest.mark.parametrize(("value", "nested"), [("Y\n", True), ("1\n", True), ("N\n", False), (None, False)])
def test_nested_kvm_is_read_from_the_kvm_module(tmp_path: Path, value: str | None, nested: bool) -> None:
    from labctl.host import nested_kvm

    if value is not None:
        folder = tmp_path / "module" / "kvm_amd" / "parameters"
        folder.mkdir(parents=True)
        (folder / "nested").write_text(value)
    assert nested_kvm(tmp_path) is nested


def test_nested_is_refused_with_the_reason_where_the_host_cannot_give_it() -> None:
    from labctl.errors import LabctlError
    from labctl.host import HostFacts, check_nested, choose_accelerator

    no_vt = HostFacts(4, 16384, frozenset(), kvm_usable=False)
    with pytest.raises(LabctlError, match=r"needs KVM for the machines first.*no vmx/svm") as err:
        check_nested(choose_accelerator("auto", no_vt), no_vt)
    assert err.value.hint and "drop nested:" in err.value.hint
    kvm_only = HostFacts(4, 16384, frozenset({"vmx"}), kvm_usable=True, nested_kvm=False)
    with pytest.raises(LabctlError, match="nested parameter is off") as err:
        check_nested(choose_accelerator("auto", kvm_only), kvm_only)
    assert err.value.hint and "kvm_intel nested=1" in err.value.hint
    nested = HostFacts(4, 16384, frozenset({"vmx"}), kvm_usable=True, nested_kvm=True)
    check_nested(choose_accelerator("auto", nested), nested)  # given: no error


def test_plan_of_a_nested_lab_on_this_host(run: Callable[..., Result], isolated_home: Path) -> None:
    """On this host as it is: refused with the reason where it cannot give nested KVM (no vmx/svm on
    the test machine), and LIBVIRT_TYPE=kvm in the machine's local.conf where it can."""
    from labctl.host import choose_accelerator, read_host

    (isolated_home / "lab.yaml").write_text("name: fast\nnested: true\nmachines: [{name: aio}]\n")
    result = run("plan", "--json")
    host = read_host()
    if choose_accelerator("auto", host).slow or not host.nested_kvm:
        assert result.code == 2 and result.err.startswith("labctl: error: nested:"), result.err
        assert not (Path(os.environ["LABCTL_HOME"]) / "labs" / "fast").exists()
    else:
        assert result.code == 0, result.err
        conf = Path(json.loads(result.out)["machines"][0]["local_conf"]).read_text()
        assert "LIBVIRT_TYPE=kvm" in conf
