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
