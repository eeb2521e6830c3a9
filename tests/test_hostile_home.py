"""labctl's own folders against a careless umask and planted links (issue 10, item 10)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Result
from labctl.errors import LabctlError
from labctl.state import LabHome


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    old = os.umask(0o022)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_labctls_folders_are_private_whatever_the_umask(run: Callable[..., Result], labctl_home: Path,
                                                         umask: Callable[[int], None]) -> None:
    umask(0o000)
    assert run("plan", "--distro", "debian").code == 0
    lab = labctl_home / "labs" / "debian-12"
    assert [mode(p) for p in (labctl_home, labctl_home / "labs", lab)] == [0o700] * 3
    assert mode(lab / "secrets.yaml") == 0o600
    with LabHome(labctl_home).writer("debian-12", "test"):
        assert mode(labctl_home / "locks") == 0o700 and mode(labctl_home / "locks" / "debian-12.lock") == 0o600


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_init_writes_the_lab_file_as_the_users_umask_says(run: Callable[..., Result], tmp_path: Path,
                                                          umask: Callable[[int], None], mask: int,
                                                          expected: int) -> None:
    umask(mask)
    assert run("init", str(tmp_path / "lab.yaml")).code == 0
    assert mode(tmp_path / "lab.yaml") == expected


def test_a_link_planted_as_the_lock_file_is_refused_and_its_target_kept(labctl_home: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (labctl_home / "locks").mkdir(parents=True)
    (labctl_home / "locks" / "victim.lock").symlink_to(target)
    with pytest.raises(LabctlError, match="is a symbolic link, not labctl's lock file"), \
            LabHome(labctl_home).writer("victim", "destroy"):
        pass
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("home", ["/tmp/a%d", '/tmp/a"b', "/tmp/a\nProxyCommand touch /tmp/x", "/tmp/${HOME}x",
                                  "/tmp/a'b", "/tmp/a\\b", "/tmp/a`id`"])
def test_a_home_ssh_would_misread_is_refused(run: Callable[..., Result], home: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ssh expands % and ${} in UserKnownHostsFile (host keys went unpinned), and a quote or newline
    in ssh-config's lines injected a ProxyCommand: such a LABCTL_HOME is one line, nothing made."""
    monkeypatch.setenv("LABCTL_HOME", home)
    result = run("plan", "--distro", "debian")
    assert result.code == 2 and "LABCTL_HOME" in result.err and "ssh reads as syntax" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 2 and "Traceback" not in result.err
    assert not Path(home).exists()


def test_a_relative_home_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A relative LABCTL_HOME would mean another folder to the forwarder, which runs from /."""
    from labctl.state import labctl_home

    monkeypatch.chdir(tmp_path)
    assert labctl_home({"LABCTL_HOME": "labs here"}) == tmp_path / "labs here"
