"""A developer's checkout in a real VM (devstack.projects, labctl sync), with the stand-in DevStack: it
clones KEYSTONE_REPO at KEYSTONE_BRANCH as DevStack does and runs it as a systemd unit devstack@keystone
(a web server over the checkout that does not start when keystone/version.py is broken). The machine
stacks the checkout's working tree; an uncommitted change arrives with `labctl sync keystone`; a broken
one is named and the previous code keeps running. The real DevStack's Keystone is the test of the same
commands against the real thing (tests/test_devstack_real.py).

Marked `devloop_vm` (and `vm`), out of the default run: pytest -m devloop_vm.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from standin_devstack import make_repo

from conftest import Result, leave_nothing, measured

pytestmark = [pytest.mark.vm, pytest.mark.devloop_vm]


@pytest.fixture
def lab_name(vm_env: Path) -> Iterator[str]:
    name = f"dev-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, ["dev1"])


def git(*argv: str, cwd: Path) -> None:
    subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "d", "GIT_AUTHOR_EMAIL": "d@d", "GIT_COMMITTER_NAME": "d",
                        "GIT_COMMITTER_EMAIL": "d@d", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


def served(run: Callable[..., Result]) -> str:
    out = run("exec", "dev1", "--json", "--", "curl -s --max-time 10 http://127.0.0.1:5000/index.html")
    return str(json.loads(out.out)["machines"]["dev1"]["stdout"]).strip()


def test_a_checkout_stacked_then_synced_and_a_broken_change_rolled_back(
        run: Callable[..., Result], isolated_home: Path, lab_name: str) -> None:
    checkout = isolated_home / "src" / "keystone"
    (checkout / "keystone").mkdir(parents=True)
    (checkout / "keystone" / "version.py").write_text("VERSION = '1.0'\n")
    (checkout / "index.html").write_text("keystone 1.0\n")
    git("init", "-q", "-b", "main", cwd=checkout)
    git("add", "-A", cwd=checkout)
    git("commit", "-q", "-m", "one", cwd=checkout)
    (checkout / "index.html").write_text("keystone 1.1-uncommitted\n")  # stacked as it is, not as committed
    library = isolated_home / "src" / "oslo.config"  # a library (LIBS_FROM_GIT) Keystone's service imports
    library.mkdir()
    (library / "check.py").write_text("print('oslo.config 1.0')\n")
    git("init", "-q", "-b", "main", cwd=library)
    git("add", "-A", cwd=library)
    git("commit", "-q", "-m", "one", cwd=library)
    repo = make_repo(isolated_home / "devstack")
    (isolated_home / "lab.yaml").write_text(
        f"name: {lab_name}\ncaches: false\nmachines:\n  - {{name: dev1, distro: debian:12, memory: 1G, cpus: 1,"
        f" disk: 10G}}\ndevstack:\n  repo: {repo}\n  localrc: {{STANDIN_PHASE_SECONDS: 0.1}}\n"
        f"  projects:\n    keystone: {checkout}\n    oslo.config: {library}\n")
    up = run("up", "--json")
    assert up.code == 0, up.err
    assert served(run) == "keystone 1.1-uncommitted"

    (checkout / "index.html").write_text("keystone 2.0-wip\n")
    began = time.monotonic()
    synced = run("sync", "keystone", "--json")
    seconds = time.monotonic() - began
    assert synced.code == 0, synced.out + synced.err
    report = json.loads(synced.out)["machines"]["dev1"]
    steps = {s["name"]: s["state"] for s in report["steps"]}
    assert steps == {"code": "replaced", "service devstack@keystone.service": "ok"}, report
    assert report["health"]["keystone"]["state"] == "ok"
    assert served(run) == "keystone 2.0-wip"
    measured(f"sync took {seconds:.0f} s")

    again = run("sync", "keystone", "--json")  # nothing changed: nothing restarted
    assert again.code == 0 and [s["state"] for s in json.loads(again.out)["machines"]["dev1"]["steps"]] == ["present"]

    (checkout / "keystone" / "version.py").write_text("raise SystemExit('broken on purpose')\n")
    (checkout / "index.html").write_text("keystone 3.0-broken\n")
    broken = run("sync", "keystone", "--json")
    assert broken.code == 1
    report = json.loads(broken.out)["machines"]["dev1"]
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["service devstack@keystone.service"]["state"] == "failed"
    assert "broken on purpose" in steps["service devstack@keystone.service"]["detail"]
    assert steps["rollback"]["state"] == "replaced" and "the previous code runs" in steps["rollback"]["detail"]
    assert served(run) == "keystone 2.0-wip"  # the previous code, running again

    # The library: its change arrives, and every DevStack service is restarted with it; a broken one
    # is rolled back as a project's is.
    (library / "check.py").write_text("print('oslo.config 1.1')\n")
    synced = run("sync", "oslo.config", "--json")
    assert synced.code == 0, synced.out + synced.err
    steps = {s["name"]: s["state"] for s in json.loads(synced.out)["machines"]["dev1"]["steps"]}
    assert steps == {"code": "replaced", "service devstack@keystone.service": "ok"}, steps
    shown = run("exec", "dev1", "--", "python3 /opt/stack/oslo.config/check.py")
    assert "oslo.config 1.1" in shown.out, shown.out + shown.err
    (library / "check.py").write_text("raise SystemExit('the library broken on purpose')\n")
    broken = run("sync", "oslo.config", "--json")
    assert broken.code == 1, broken.out + broken.err
    steps = {s["name"]: s for s in json.loads(broken.out)["machines"]["dev1"]["steps"]}
    assert "the library broken on purpose" in steps["service devstack@keystone.service"]["detail"]
    assert steps["rollback"]["state"] == "replaced"
    assert served(run) == "keystone 2.0-wip"
    assert run("destroy", "-y").code == 0
