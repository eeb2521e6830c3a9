"""A plain `pip install .` (not only an editable one) must carry the data and work from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

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
