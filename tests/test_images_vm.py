"""Stacked images in real VMs (labctl.stacking.images), with the stand-in DevStack from the shared git
mirrors: a first lab stacks and keeps its disk as an image; a second lab of the same stack is made
from it without stack.sh (its own name, address, machine-id, passwords), both running at once; a lab
whose local.conf differs stacks afresh and says why; the image outlives the lab that made it, is
refused removal while a machine stands on it, and goes with `labctl images rm` and `prune`.

The real DevStack's image (Keystone answering in the second lab) is bench/second_up.py's. Marked
`devloop_vm` (and `vm`), out of the default run: pytest -m devloop_vm.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from standin_devstack import make_repo
from test_devstack_real import MIRRORS

from conftest import Result, leave_nothing, measured

pytestmark = [pytest.mark.vm, pytest.mark.devloop_vm]


@pytest.fixture
def names(vm_env: Path) -> Iterator[list[str]]:
    tag = uuid.uuid4().hex[:5]
    labs = [f"img{n}-{tag}" for n in "abc"]
    yield labs
    for lab in labs:
        leave_nothing(lab, ["dev1"])


def lab_yaml(folder: Path, name: str, repo: Path, phase_seconds: str = "0.1") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lab.yaml").write_text(
        f"name: {name}\ncaches: false\nmachines:\n  - {{name: dev1, distro: debian:12, memory: 1G, cpus: 1,"
        f" disk: 10G}}\ndevstack:\n  repo: {repo}\n  git_base: {MIRRORS}\n"
        f"  localrc: {{ENABLED_SERVICES: 'key,mysql', STANDIN_PHASE_SECONDS: {phase_seconds}}}\n")


def inside(run: Callable[..., Result], lab: str, command: str) -> str:
    out = run("exec", "--lab", lab, "dev1", "--json", "--", command)
    assert out.code == 0, out.out + out.err
    return str(json.loads(out.out)["machines"]["dev1"]["stdout"]).strip()


def images(run: Callable[..., Result]) -> list[dict[str, object]]:
    out = run("images", "--json")
    assert out.code == 0, out.err
    return list(json.loads(out.out)["images"])


def test_a_second_lab_of_the_same_stack_is_made_from_the_first_ones_image(
        run: Callable[..., Result], isolated_home: Path, names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if not (MIRRORS / "openstack" / "keystone.git").is_dir():
        pytest.skip(f"{MIRRORS} is not there")
    a, b, c = names
    repo = make_repo(isolated_home / "devstack")
    for lab in names:
        lab_yaml(isolated_home / lab, lab, repo, "0.2" if lab == c else "0.1")

    monkeypatch.chdir(isolated_home / a)
    began = time.monotonic()
    first = run("up", "--json")
    first_s = time.monotonic() - began
    assert first.code == 0, first.err
    assert "no stacked image of this stack yet" in first.err and "kept as image" in first.err, first.err
    [kept] = images(run)
    assert (kept["lab"], kept["uses"], kept["present"], kept["users"]) == (a, 0, True, []), kept
    digest = str(kept["digest"])
    a_secrets = json.loads(run("creds", "--lab", a, "--json").out)
    a_facts = inside(run, a, "cat /etc/machine-id; hostname")

    monkeypatch.chdir(isolated_home / b)
    began = time.monotonic()
    second = run("up", "--json")
    second_s = time.monotonic() - began
    assert second.code == 0, second.err
    assert f"made from stacked image {digest}" in second.err, second.err
    # Created on the image, without a box: Vagrant booted nothing only to be thrown away.
    assert f"dev1: created on stacked image {digest} (lab {a}): no box to boot" in second.err, second.err
    vagrant_log = Path(os.environ["LABCTL_HOME"]) / "labs" / b / "logs" / "vagrant.log"
    assert "Machine booted and ready" not in vagrant_log.read_text()
    assert "Starting Keystone" in first.err and "Starting Keystone" not in second.err  # stack.sh's phases: none
    result = json.loads(second.out)["devstack"]["machines"]["dev1"]
    assert (result["status"], result["phase"]) == ("ok", f"made from image {digest}"), result
    measured(f"first up {first_s:.0f} s (stack.sh and keeping its image), second up {second_s:.0f} s")

    # Its own machine: the stack's files, its own passwords everywhere, its own machine-id and lease.
    b_secrets = json.loads(run("creds", "--lab", b, "--json").out)
    a_admin, b_admin = a_secrets["password"], b_secrets["password"]
    assert a_admin != b_admin
    assert inside(run, b, "test -e /opt/stack/standin-stacked && echo stacked") == "stacked"
    assert inside(run, b, f"sudo grep -rlF {a_admin} /opt/stack /etc || echo none") == "none"
    assert inside(run, b, f"sudo grep -c {b_admin} /opt/stack/devstack/local.conf") == "1"
    b_facts = inside(run, b, "cat /etc/machine-id; hostname")
    assert a_facts.split()[0] != b_facts.split()[0] and b_facts.split()[1] == "dev1"
    addresses = {lab: json.loads(run("status", "--lab", lab, "--json").out)["machines"][0] for lab in (a, b)}
    assert addresses[a]["ssh_address"] != addresses[b]["ssh_address"], addresses  # two leases, both answer
    assert inside(run, a, "test -e /opt/stack/standin-stacked && echo stacked") == "stacked"
    [used] = images(run)
    assert (used["uses"], used["users"]) == (1, [f"labctl-{b}-dev1"]), used
    # A machine Vagrant made without a box halts and starts again as any (Vagrant reaches it with the
    # key labctl made for it), and an up that finds it running does nothing.
    assert run("halt", "--lab", b).code == 0
    resumed = run("resume", "--lab", b)
    assert resumed.code == 0, resumed.err
    assert inside(run, b, "test -e /opt/stack/standin-stacked && echo stacked") == "stacked"
    monkeypatch.chdir(isolated_home / b)
    again = run("up", "--json")
    assert again.code == 0 and "created on stacked image" not in again.err, again.err
    refused = run("images", "rm", digest)
    assert refused.code != 0 and f"labctl-{b}-dev1" in refused.err, refused.err

    # Another local.conf is another stack: stack.sh runs, and says why.
    monkeypatch.chdir(isolated_home / c)
    third = run("up", "--json")
    assert third.code == 0, third.err
    assert f"the nearest, {digest}" in third.err and "+STANDIN_PHASE_SECONDS=0.2" in third.err, third.err
    assert len(images(run)) == 2

    # The image outlives the lab that made it, and the lab made from it still works.
    assert run("destroy", "--lab", a, "-y").code == 0
    assert digest in [i["digest"] for i in images(run)]
    assert inside(run, b, "test -e /opt/stack/standin-stacked && echo stacked") == "stacked"
    for lab in (b, c):
        assert run("destroy", "--lab", lab, "-y").code == 0
    assert run("images", "rm", digest).code == 0
    pruned = run("images", "prune", "--max-size", "0", "--json")
    assert pruned.code == 0 and len(json.loads(pruned.out)["removed"]) == 1, pruned.out + pruned.err
    assert images(run) == []
    from labctl.adapters.hypervisor import Hypervisor

    with Hypervisor() as hypervisor:
        assert hypervisor.base_named(f"labctl-image.{digest}.img") is None


def test_a_keep_that_fails_fails_no_stack_and_an_up_cut_short_mid_image_goes_on(
        run: Callable[..., Result], isolated_home: Path, names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeping an image fails (labctl's images folder cannot be written: as a full disk would): the stack
    is not failed, the machine runs again, nothing passes for an image. An up SIGKILLed while its
    machine is made from an image goes on at the next up, from the same image."""
    if not (MIRRORS / "openstack" / "keystone.git").is_dir():
        pytest.skip(f"{MIRRORS} is not there")
    a, b, c = names
    repo = make_repo(isolated_home / "devstack")
    for lab in names:
        lab_yaml(isolated_home / lab, lab, repo)
    home = Path(os.environ["LABCTL_HOME"])
    from labctl.adapters.hypervisor import Hypervisor

    with Hypervisor() as hypervisor:  # other runs' images on this host, if any, are theirs
        others = set(hypervisor.image_volumes("labctl-image."))
    (home / "images").parent.mkdir(parents=True, exist_ok=True)
    (home / "images").write_text("not a folder\n")  # every write under it fails

    monkeypatch.chdir(isolated_home / a)
    first = run("up", "--json")
    assert first.code == 0, first.err
    assert "dev1: stacked, but its disk was not kept as an image" in first.err, first.err
    assert json.loads(first.out)["devstack"]["machines"]["dev1"]["status"] == "ok"
    assert inside(run, a, "test -e /opt/stack/standin-stacked && echo stacked") == "stacked"  # booted again
    assert images(run) == []
    with Hypervisor() as hypervisor:
        assert set(hypervisor.image_volumes("labctl-image.")) == others  # no copy left behind either
    (home / "images").unlink()

    monkeypatch.chdir(isolated_home / b)
    second = run("up", "--json")
    assert second.code == 0 and "kept as image" in second.err, second.err
    [kept] = images(run)
    b_admin = json.loads(run("creds", "--lab", b, "--json").out)["password"]

    # c is made from the image; labctl is killed once the machine booted on its copy of it.
    lab_dir = home / "labs" / c
    with (isolated_home / "c-up.err").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "labctl", "up"], cwd=isolated_home / c,
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    log = lab_dir / "logs" / "dev1" / "stack.log"
    deadline = time.monotonic() + 900
    while not (log.exists() and "made from stacked image" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, (isolated_home / "c-up.err").read_text()
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    monkeypatch.chdir(isolated_home / c)
    again = run("up", "--json")
    assert again.code == 0, again.err
    assert f"its disk is a copy of image {kept['digest']} not yet made its own machine: made again" in again.err
    result = json.loads(again.out)["devstack"]["machines"]["dev1"]
    assert (result["status"], result["phase"]) == ("ok", f"made from image {kept['digest']}"), result
    c_admin = json.loads(run("creds", "--lab", c, "--json").out)["password"]
    assert inside(run, c, "test -e /opt/stack/standin-stacked && echo stacked") == "stacked"
    assert inside(run, c, f"sudo grep -rlF {b_admin} /opt/stack /etc || echo none") == "none"
    assert inside(run, c, f"sudo grep -c {c_admin} /opt/stack/devstack/local.conf") == "1"

    for lab in names:
        assert run("destroy", "--lab", lab, "-y").code == 0
    assert run("images", "rm", str(kept["digest"])).code == 0
    with Hypervisor() as hypervisor:
        assert set(hypervisor.image_volumes("labctl-image.")) == others


@pytest.fixture
def classes(vm_env: Path) -> Iterator[list[str]]:
    tag = uuid.uuid4().hex[:5]
    labs = [f"cls{n}-{tag}" for n in "ab"]
    yield labs
    for lab in labs:
        leave_nothing(lab, ["seat-01", "seat-02"])


def test_a_class_held_again_makes_its_template_from_the_first_ones_image(
        run: Callable[..., Result], isolated_home: Path, classes: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A class stacks seat-01 once and keeps its disk as an image while it is shut off for the class's
    base; the same class held again (another lab of the same settings) makes seat-01 the template from
    that image, without stack.sh, and every seat its own from it: passwords of its own, none of the
    first class's."""
    if not (MIRRORS / "openstack" / "keystone.git").is_dir():
        pytest.skip(f"{MIRRORS} is not there")
    a, b = classes
    base = 23000 + (os.getpid() % 400) * 10
    # A classroom's DevStack checkout lies in its folder, and the same checkout is the same stack: the
    # first class's folder lies in the second's.
    folders = {b: isolated_home / b, a: isolated_home / b / a}
    folders[a].mkdir(parents=True)
    repo = make_repo(folders[a] / "devstack")
    for n, lab in enumerate(classes):
        folder = folders[lab]
        (folder / "lab.yaml").write_text(
            f"name: {lab}\ncaches: false\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
            f"classroom:\n  seats: 2\n  ssh_port: {base + n * 2}\n  web_port: {base + 5000 + n * 2}\n"
            f"  seat_networks: false\ndevstack:\n  repo: {repo}\n  git_base: {MIRRORS}\n"
            "  localrc: {ENABLED_SERVICES: 'key,mysql', STANDIN_PHASE_SECONDS: 0.1}\n")

    monkeypatch.chdir(folders[a])
    first = run("up", "--json")
    assert first.code == 0, first.err
    assert "seat-01: its stacked disk kept as image" in first.err, first.err
    [kept] = images(run)
    assert kept["lab"] == a and kept["machine"] == "seat-01", kept
    a_admin = json.loads(run("creds", "--lab", a, "--json").out)["machines"]
    home = Path(os.environ["LABCTL_HOME"])
    a_template = list(json.loads((home / "labs" / a / "template-secrets.json").read_text()).values())
    assert run("destroy", "--lab", a, "-y").code == 0
    assert [i["digest"] for i in images(run)] == [kept["digest"]]  # outlives its class

    monkeypatch.chdir(folders[b])
    second = run("up", "--json")
    assert second.code == 0, second.err
    assert f"seat-01: made the template from stacked image {kept['digest']}" in second.err, second.err
    assert "Starting Keystone" not in second.err  # no stack.sh
    results = json.loads(second.out)["devstack"]["machines"]
    assert {n: r["status"] for n, r in results.items()} == {"seat-01": "ok", "seat-02": "ok"}, results
    creds = json.loads(run("creds", "--lab", b, "--json").out)["machines"]
    for seat in ("seat-01", "seat-02"):
        out = run("exec", "--lab", b, seat, "--json", "--", "test -e /opt/stack/standin-stacked && echo stacked;"
                  " hostname")
        assert out.code == 0, out.out + out.err
        assert json.loads(out.out)["machines"][seat]["stdout"].split() == ["stacked", seat]
    # No password of the first class, nor the template's, is any seat's.
    theirs = {str(m.get("password")) for m in a_admin.values()} - {"None"}
    mine = {str(m.get("password")) for m in creds.values()} - {"None"}
    assert theirs and mine and not theirs & mine, (theirs, mine)
    # seat-01's own password never reached the template's disk, which every seat stands on.
    leaked = run("exec", "--lab", b, "seat-02", "--json", "--",
                 f"sudo grep -rlF {creds['seat-01']['password']} /opt/stack /etc || echo none")
    assert json.loads(leaked.out)["machines"]["seat-02"]["stdout"].strip() == "none", leaked.out
    for secret in [*theirs, *a_template]:  # the first class's seats' and its template's, which the image held
        out = run("exec", "--lab", b, "seat-01", "seat-02", "--json", "--",
                  f"sudo grep -rlF {secret} /opt/stack /etc || echo none")
        assert [m["stdout"].strip() for m in json.loads(out.out)["machines"].values()] == ["none", "none"], out.out
    assert run("destroy", "--lab", b, "-y").code == 0
    assert run("images", "rm", str(kept["digest"])).code == 0
