"""A plain `pip install .` (not only an editable one) must carry the data and work from anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

DATA = ["labctl/data/Vagrantfile.j2", "labctl/data/boxes/debian.yaml", "labctl/data/local.conf.d/base.conf",
        "labctl/data/local.conf.d/compute.conf", "labctl/templates/lab.yaml"]


def test_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("labctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert set(DATA) <= set(names)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "LABCTL_HOME": str(tmp_path / "h")}
    code = ("import json, labctl, labctl.cli; print(json.dumps(labctl.__file__));"
            "raise SystemExit(labctl.cli.main(['plan', '--distro', 'debian', '--json']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, _, plan = proc.stdout.partition("\n")
    assert json.loads(first).startswith(str(site))
    assert Path(json.loads(plan)["vagrantfile"]).read_text().count("config.vm.define") == 1
    # The docs ship inside too: `labctl help TOPIC` reads them where no checkout is.
    helped = subprocess.run([sys.executable, "-c", "import labctl.cli; raise SystemExit(labctl.cli.main(['help',"
                             " 'classroom']))"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "How trainees reach their seat" in helped.stdout, helped.stderr


def test_install_links_labctl_and_says_what_to_add_to_path(tmp_path: Path) -> None:
    """install.sh's last step, run for real (`--link` runs it alone: the rest needs apt and root):
    with ~/.local/bin off PATH it prints the exact line to add, and once that line is followed a new
    shell finds `labctl`."""
    if not (REPO / ".venv" / "bin" / "labctl").exists():
        pytest.skip("no .venv: run ./install.sh first")
    home = tmp_path / "user"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["bash", str(REPO / "install.sh"), "--link"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert (home / ".local" / "bin" / "labctl").resolve() == (REPO / ".venv" / "bin" / "labctl").resolve()
    assert "~/.local/bin is not on your PATH" in out
    line = next(x.strip() for x in out.splitlines() if "export PATH" in x)
    assert line == """echo 'export PATH="$HOME/.local/bin:$PATH"' >> ~/.bashrc && . ~/.bashrc"""
    subprocess.run(["bash", "-c", line], env=env, check=True)  # what the user is told to type
    version = subprocess.run(["bash", "-ic", "labctl --version"], env=env, capture_output=True, text=True,
                             check=False)
    assert version.returncode == 0 and "labctl" in version.stdout, version.stdout + version.stderr
    again = subprocess.run(["bash", str(REPO / "install.sh"), "--link"], capture_output=True, text=True, check=True,
                           env={**env, "PATH": f"{home}/.local/bin:/usr/bin:/bin"}).stdout
    assert "not on your PATH" not in again and "next: labctl up --distro debian" in again
    bad = subprocess.run(["bash", str(REPO / "install.sh"), "--nope"], env=env, capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "unknown option --nope" in bad.stderr


def test_uninstall_undoes_install_and_keeps_labs_unless_told(tmp_path: Path, labctl_home: Path) -> None:
    """install.sh --uninstall, run for real in a copy of the checkout whose .venv runs this labctl:
    refused while a lab exists, then (--keep-labs) the link, labctl's lines of libvirtd.conf and the
    .venv go, and nothing else."""
    checkout = tmp_path / "labctl"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(REPO / "install.sh", checkout / "install.sh")
    venv = checkout / ".venv" / "bin"
    (venv / "labctl").write_text(f"#!/bin/sh\nexec {REPO / '.venv' / 'bin' / 'labctl'} \"$@\"\n")
    (venv / "labctl").chmod(0o755)
    (venv / "python").symlink_to(REPO / ".venv" / "bin" / "python")
    home = tmp_path / "user"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "labctl").symlink_to(venv / "labctl")
    conf = tmp_path / "libvirtd.conf"
    mine = "# the admin's own\nlisten_tls = 0\n"
    conf.write_text(mine + "# labctl: libvirt group access without polkit (install.sh)\nunix_sock_group = \"libvirt\"\n"
                    "unix_sock_rw_perms = \"0770\"\nauth_unix_rw = \"none\"\nlog_level = 3\n")
    env = {**os.environ, "HOME": str(home), "LIBVIRTD_CONF": str(conf)}
    assert subprocess.run([str(venv / "labctl"), "plan", "--distro", "debian"], env=env, capture_output=True,
                          check=False).returncode == 0  # a lab, with no machine yet

    refused = subprocess.run(["bash", str(checkout / "install.sh"), "--uninstall"], env=env, capture_output=True,
                             text=True, check=False)
    assert refused.returncode == 1 and "labs still exist: debian-12" in refused.stderr, refused.stderr
    assert (venv / "labctl").exists() and (home / ".local" / "bin" / "labctl").is_symlink()
    assert "labctl: libvirt group access" in conf.read_text()

    done = subprocess.run(["bash", str(checkout / "install.sh"), "--uninstall", "--keep-labs"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not (checkout / ".venv").exists() and not (home / ".local" / "bin" / "labctl").exists()
    assert conf.read_text() == mine + "log_level = 3\n"
    assert (checkout / "install.sh").exists() and (labctl_home / "labs" / "debian-12").is_dir()
    assert "sudo apt-get remove" in done.stdout and "labctl is uninstalled" in done.stdout
