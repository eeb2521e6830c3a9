"""Faults caused for real: a second writer, killed commands, stale locks, torn writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import REPO, Result

HOLD = """
import sys, time
from pathlib import Path
from labctl.state import LabHome
with LabHome(Path(sys.argv[1])).writer(sys.argv[2], "hold-for-test"):
    print("locked", flush=True)
    time.sleep(120)
"""


def hold_lock(home: Path, lab: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home), lab], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_one_writer_per_lab(run: Callable[..., Result], isolated_home: Path, labctl_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text("name: busy\nmachines: [{name: alpha}]\n")
    assert run("plan").code == 0
    holder = hold_lock(labctl_home, "busy")
    try:
        blocked = run("plan")
        assert blocked.code == 1
        assert f"`labctl hold-for-test` (pid {holder.pid})" in blocked.err and f"kill {holder.pid}" in blocked.err
        assert run("creds").code == 0  # reading is never blocked
        other = isolated_home / "other"
        other.mkdir()
        (other / "lab.yaml").write_text("name: other\nmachines: [{name: alpha}]\n")
        assert run("plan", "-f", str(other / "lab.yaml")).code == 0  # other labs are not blocked
    finally:
        holder.kill()  # SIGKILL: the lock is left behind, stale
        holder.wait()
    assert run("plan").code == 0  # and taken over


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".tmp")}


def test_killed_plans_never_leave_a_torn_file(isolated_home: Path, labctl_home: Path) -> None:
    lab_yaml = isolated_home / "lab.yaml"
    lab_yaml.write_text("name: torn\nmachines:\n  - {name: seat, count: 30}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    lab_dir = labctl_home / "labs" / "torn"
    for delay in (0.05, 0.15, 0.25, 0.35, 0.45, 0.6):
        proc = subprocess.Popen([sys.executable, "-m", "labctl", "plan"], cwd=isolated_home, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Whatever the moment, every file there is whole: absent, or complete and readable.
        for name, data in _files(lab_dir).items() if lab_dir.exists() else []:
            if name == "lab.json":
                assert json.loads(data)["name"] == "torn"
            elif name == "secrets.yaml":
                assert len(yaml.safe_load(data)["passwords"]) == 4
            elif name.endswith("local.conf"):
                assert data.startswith(b"# local.conf") and b"[[local|localrc]]" in data
            elif name == "Vagrantfile":
                assert data.rstrip().endswith(b"end")
    secrets = (lab_dir / "secrets.yaml").read_bytes() if (lab_dir / "secrets.yaml").exists() else None
    done = subprocess.run([sys.executable, "-m", "labctl", "plan", "--json"], cwd=isolated_home, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["machines"]) == 30
    if secrets is not None:
        assert (lab_dir / "secrets.yaml").read_bytes() == secrets  # passwords survive every crash


def test_a_program_that_runs_labctl_gets_its_sigterm_back(run: Callable[..., Result]) -> None:
    """labctl's SIGTERM handler is its own while it runs: the test suite calls main() in its own process,
    and a CI run stopped by SIGTERM went on testing (a labctl run had kept the handler, which took the
    signal for its own and ended only the test in progress)."""
    mine = signal.getsignal(signal.SIGTERM)
    assert run("--version").code == 0
    assert signal.getsignal(signal.SIGTERM) is mine
    assert run("status", "--lab", "no-such-lab").code != 0  # an error ends it the same way
    assert signal.getsignal(signal.SIGTERM) is mine


def test_sigterm_exits_143(isolated_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    (isolated_home / "lab.yaml").write_text("name: sig\nmachines: [{name: alpha}]\n")
    subprocess.run([sys.executable, "-m", "labctl", "plan"], cwd=isolated_home, env=env, check=True,
                   capture_output=True)
    # `logs --follow` runs until stopped: the simplest long command.
    follower = subprocess.Popen([sys.executable, "-m", "labctl", "logs", "alpha", "--follow"], cwd=isolated_home,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    follower.send_signal(signal.SIGTERM)
    _, err = follower.communicate(timeout=10)
    assert follower.returncode == 143 and "terminated" in err


def test_full_disk_is_a_clear_error_and_keeps_the_lab(run: Callable[..., Result], isolated_home: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab folder's filesystem fills up (a small tmpfs mounted for the test)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test mounts a filesystem: it needs root")
        pytest.skip("this test mounts a filesystem: it needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        monkeypatch.setenv("LABCTL_HOME", str(small))
        (isolated_home / "lab.yaml").write_text("name: full\nmachines: [{name: alpha}]\n")
        assert run("plan").code == 0
        lab_dir = small / "labs" / "full"
        before = _files(lab_dir)
        with (small / "filler").open("wb", buffering=0) as filler:  # take every block that is left
            try:
                while True:
                    filler.write(b"x" * 4096)
            except OSError:
                pass
        (isolated_home / "lab.yaml").write_text("name: full\nmachines:\n  - {name: seat, count: 20}\n")
        result = run("plan")
        assert result.code == 2, result.err
        assert "cannot write" in result.err and "No space left on device" in result.err
        assert "Traceback" not in result.err and "internal error" not in result.err
        after = _files(lab_dir)
        assert after["secrets.yaml"] == before["secrets.yaml"] and after["lab.json"] == before["lab.json"]
        assert not list(lab_dir.rglob("*.tmp"))
        (small / "filler").unlink()
        assert run("plan").code == 0  # space back: the lab is planned in full
        assert len(list((lab_dir / "machines").iterdir())) == 20
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_two_ups_at_once_make_boxes_one_after_the_other(tmp_path: Path) -> None:
    """Two `up`s that started together each built the test box and added two versions of it to Vagrant
    (a lab then took the newer one, and another lab's stacked image of the older was another stack).
    Boxes are made by one labctl at a time: the second waits, says so, and finds the box made."""
    import fcntl
    import threading
    from types import SimpleNamespace

    from fakes import FakeHost, FakeVagrant

    from labctl.boxes import ensure_boxes
    from labctl.catalog import default_catalog
    from labctl.labfile import lab_from_dict

    lab = lab_from_dict({"name": "t", "machines": [{"name": "alpha", "distro": "debian:12"}]}, default_catalog())
    steps: list[str] = []
    reporter = SimpleNamespace(step=steps.append, warn=steps.append)
    done: list[dict[str, str]] = []
    with (tmp_path / "boxes.lock").open("a") as held:  # another labctl, making boxes
        fcntl.flock(held, fcntl.LOCK_EX)
        second = threading.Thread(target=lambda: done.append(ensure_boxes(
            lab, SimpleNamespace(cache=tmp_path), FakeVagrant(FakeHost()), reporter, "http://deb.debian.org/debian")))  # type: ignore[arg-type]
        second.start()
        deadline = time.monotonic() + 10
        while "waiting for another labctl making boxes" not in steps:
            assert time.monotonic() < deadline, steps
            time.sleep(0.01)
        time.sleep(0.2)
        assert done == [] and second.is_alive()  # it waits
    second.join(10)
    assert done == [{lab.machines[0].box: "labctl/debian-12"}], (done, steps)
