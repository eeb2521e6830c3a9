"""The real DevStack, end to end: `labctl up` of a lab file that names ../shared/mirrors/ stacks the
real DevStack master, keystone-only, through the host's package caches, in a real Debian 12 VM
(software emulation here: about 30 minutes), then Keystone issues a token to `labctl creds`' admin
and refuses a wrong password. Keystone is a developer's checkout (`devstack.projects`, a clone of the
mirror): a second lab of the same stack is made from the first one's stacked image (no stack.sh), and
a change to the checkout reaches the running Keystone with `labctl sync keystone` (one with a new entry
point reinstalls it), a broken one is named and the previous code keeps answering.

Marked `devstack` (and `vm`): `pytest -m "not devstack"` skips it. The stand-in DevStack of the other
tests cannot tell whether labctl gets what the real one needs; this test can.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, Result, libvirt_names, measured

pytestmark = [pytest.mark.vm, pytest.mark.devstack]

MIRRORS = REPO.parent / "shared" / "mirrors"
HOST_CAS = Path("/usr/local/share/ca-certificates")


def token(auth_url: str, user: str, password: str) -> int:
    """POST /v3/auth/tokens from the host, straight to the VM (no proxy): the HTTP status."""
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    request = urllib.request.Request(f"{auth_url}/v3/auth/tokens", data=json.dumps(body).encode(),  # noqa: S310 - an http URL of the lab's
                                     headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            assert response.headers.get("X-Subject-Token")
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def fetched_through_caches(run: Callable[..., Result], lab: str, machine: str) -> None:
    """Every Debian package and PyPI file came through the host's caches."""
    caches = {c["name"]: c for c in json.loads(run("cache", "--json").out)["caches"]}
    assert caches["apt"]["requests"] > 50 and caches["pypi"]["requests"] > 50, caches
    log_text = run("logs", machine, "--lab", lab).out
    assert f"Downloading http://{caches['pypi']['url'].split('/')[2]}/root/pypi/" in log_text


def mirror_clone(name: str, dest: Path) -> Path:
    """A working checkout of a mirror's master, as a developer's would be. The mirrors are read-only and
    may lack their empty refs/ folders (git then does not know them for repositories): cloned from a
    copy that has them."""
    bare = dest.parent / f"{name}-mirror.git"
    shutil.copytree(MIRRORS / "openstack" / f"{name}.git", bare)
    for folder in [bare, *bare.rglob("*")]:
        folder.chmod(folder.stat().st_mode | 0o200)
    for refs in ("refs/heads", "refs/tags"):
        (bare / refs).mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--branch", "master", str(bare), str(dest)], check=True)
    return dest


@pytest.fixture
def real_lab(vm_env: Path, isolated_home: Path) -> Iterator[tuple[str, Path, Path]]:
    checkout = mirror_clone("keystone", isolated_home / "src" / "keystone")
    for name, folder in keystone_lab(isolated_home, "debian:12", checkout):
        yield name, folder, checkout
        from labctl.adapters.hypervisor import Hypervisor

        with Hypervisor() as hypervisor:  # the second lab, made from the first one's image
            hypervisor.remove_leftovers([f"labctl-{name}-b-ks"], f"labctl-{name}-b")


def keystone_lab(isolated_home: Path, distro: str, checkout: Path | None = None) -> Iterator[tuple[str, Path]]:
    """A keystone-only lab from the mirrors on `distro`, Keystone from `checkout` if given (its
    machine removed at the end)."""
    if not (MIRRORS / "openstack" / "devstack.git").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{MIRRORS} is missing: CI has ../shared/ beside the clone")
        pytest.skip(f"{MIRRORS} is not there")
    name = f"real-{uuid.uuid4().hex[:6]}"
    cas = sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []
    lines = [f"name: {name}", f"defaults: {{distro: '{distro}', memory: 8G, cpus: 2, disk: 20G}}",
             "machines:", "  - {name: ks}"]
    if cas:  # a TLS-intercepting proxy between the VM and PyPI: its CA must be trusted inside
        lines += ["ca_certificates:", *(f"  - {p}" for p in cas)]
    # Packages and PyPI files through the host's caches (labctl.cache): DevStack's own pip and apt use them.
    lines += ["caches: true", "devstack:", f"  git_base: {MIRRORS}", "  localrc: {ENABLED_SERVICES: 'key,mysql'}"]
    if checkout:
        lines += [f"  projects: {{keystone: {checkout}}}"]
    (isolated_home / "lab.yaml").write_text("\n".join(lines) + "\n")
    yield name, isolated_home
    from labctl.adapters.hypervisor import Hypervisor

    with Hypervisor() as hypervisor:
        hypervisor.remove_leftovers([f"labctl-{name}-ks"], f"labctl-{name}")


def test_real_keystone_only_devstack(run: Callable[..., Result], real_lab: tuple[str, Path, Path]) -> None:
    name, folder, checkout = real_lab
    stacks_keystone_and_resets(run, name, folder)
    a_second_lab_is_made_from_the_image(run, name, folder)
    a_change_is_synced_and_a_broken_one_rolled_back(run, name, checkout)
    destroys_leaving_nothing(run, name)


def up_json(folder: Path) -> tuple[dict[str, Any], str]:
    """`labctl up --json` in `folder`: its report and its progress (stderr). Given 90 minutes: a stack
    under software emulation took an hour on a slow day here (stack.sh's apt and pip are CPU), and the
    first up keeps its image after."""
    progress = folder / "up.progress"
    with progress.open("w") as err:
        up = subprocess.run([sys.executable, "-m", "labctl", "up", "--json"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=err, text=True, timeout=5400, stdin=subprocess.DEVNULL)
    shown = progress.read_text()
    assert up.returncode == 0, shown[-5000:]
    return json.loads(up.stdout), shown


def stacks_keystone_and_resets(run: Callable[..., Result], name: str, folder: Path) -> None:
    """`labctl up` stacks the lab; its Keystone gives `labctl creds`' admin a token (and refuses a wrong
    password), and a reset brings back the stacked DevStack."""
    report, shown = up_json(folder)
    ks = report["devstack"]["machines"]["ks"]
    ip = report["machines"][0]["ip"]
    assert ks["status"] == "ok"
    # Only what DevStack says it serves: Keystone, and no dashboard (no Horizon in this lab).
    assert ks["keystone"] == f"http://{ip}/identity/" and ks["dashboard"] is None
    phases = [p["phase"] for p in ks["phases"]]
    measured("stack.sh's phases:", ", ".join(f"{p['phase']} {p['seconds']:.0f} s" for p in ks["phases"]))
    assert phases[-4:] == ["Installing package prerequisites", "Installing OpenStack project source",
                           "Configuring and starting MySQL", "Starting Keystone"]
    # Live progress: labctl's steps and DevStack's phases, never apt's or pip's lines.
    assert "ks: Starting Keystone" in shown
    assert "Setting up " not in shown and "Collecting " not in shown
    assert "serving them to the machines at git://" in shown
    fetched_through_caches(run, name, "ks")

    creds = json.loads(run("creds", "--json", "--lab", name).out)
    auth_url = creds["machines"]["ks"]["auth_url"]
    assert auth_url == f"http://{ip}/identity" and creds["machines"]["ks"]["dashboard"] is None
    assert token(auth_url, creds["username"], creds["password"]) == 201
    assert token(auth_url, creds["username"], creds["password"] + "x") == 401
    # The openrc `labctl creds` prints works inside the machine too, with DevStack's own client.
    openrc = run("creds", "--lab", name).out.split("# openrc", 1)[1].split("\n", 1)[1]
    inside = run("exec", "ks", "--lab", name, "--", openrc + "openstack token issue -f value -c id")
    assert inside.code == 0 and len(inside.out.strip().splitlines()[-1]) > 20, inside.out + inside.err

    # A trainee breaks the real DevStack; `reset` brings back the `stacked` snapshot labctl took,
    # memory included: MySQL and Keystone run at once, without what was done since.
    snaps = json.loads(run("snapshot", "list", "--json", "--lab", name).out)["machines"]
    assert [s["name"] for s in snaps["ks"]] == ["stacked"] and snaps["ks"][0]["state"] == "running"
    made = run("exec", "ks", "--lab", name, "--", openrc + "openstack project create broken-by-trainee")
    assert made.code == 0, made.out + made.err
    reset = run("reset", "ks", "--lab", name)
    assert reset.code == 0, reset.out + reset.err
    assert token(auth_url, creds["username"], creds["password"]) == 201
    gone = run("exec", "ks", "--lab", name, "--", openrc + "openstack project show broken-by-trainee")
    # openstackclient says "No Project found for broken-by-trainee" (its words, not ours).
    assert gone.code == 1 and "no project found" in (gone.out + gone.err).lower(), gone.out + gone.err

    status = json.loads(run("status", "--json", "--lab", name).out)["machines"][0]
    assert status["devstack"] == "stacked"
    assert status["devstack_slowest"] and {p["phase"] for p in status["devstack_slowest"]} <= set(phases)
    log = run("logs", "ks", "--lab", name).out
    assert creds["password"] not in log and "The password: ********" in log


def destroys_leaving_nothing(run: Callable[..., Result], name: str) -> None:
    assert run("destroy", "-y", "--lab", name).code == 0
    after = libvirt_names()
    assert not [n for n in after["domains"] | after["networks"] if name in n]


def a_second_lab_is_made_from_the_image(run: Callable[..., Result], name: str, folder: Path) -> None:
    """The first lab's stacked disk was kept as an image; a second lab of the same stack is made from it
    (no stack.sh), its Keystone takes its own admin password and refuses the first lab's; the image
    outlives the second lab's destroy."""
    kept = [i for i in json.loads(run("images", "--json").out)["images"] if i["lab"] == name]
    assert len(kept) == 1 and kept[0]["present"], kept
    second = f"{name}-b"
    (folder / second).mkdir()
    text = (folder / "lab.yaml").read_text()
    (folder / second / "lab.yaml").write_text(text.replace(f"name: {name}\n", f"name: {second}\n", 1))
    began = time.monotonic()
    report, shown = up_json(folder / second)
    measured(f"the second lab, from the image: {time.monotonic() - began:.0f} s")
    assert f"made from stacked image {kept[0]['digest']}" in shown and "Starting Keystone" not in shown, shown
    creds = json.loads(run("creds", "--json", "--lab", second).out)
    first = json.loads(run("creds", "--json", "--lab", name).out)
    auth_url = creds["machines"]["ks"]["auth_url"]
    assert auth_url == f"http://{report['machines'][0]['ip']}/identity"
    assert creds["password"] != first["password"]
    assert token(auth_url, creds["username"], creds["password"]) == 201
    assert token(auth_url, first["username"], first["password"]) == 401
    destroys_leaving_nothing(run, second)
    assert kept[0]["digest"] in [i["digest"] for i in json.loads(run("images", "--json").out)["images"]]


def updated(auth_url: str) -> str:
    """What Keystone's version document says of v3's last update (GET /identity/v3)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{auth_url}/v3", timeout=60) as answer:
        return str(json.load(answer)["version"]["updated"])


def a_change_is_synced_and_a_broken_one_rolled_back(run: Callable[..., Result], name: str, checkout: Path) -> None:
    """An uncommitted change to the developer's Keystone reaches the running Keystone with `labctl sync
    keystone`; a change that breaks Keystone's import is named and the previous code answers again."""
    creds = json.loads(run("creds", "--json", "--lab", name).out)
    auth_url = creds["machines"]["ks"]["auth_url"]
    assert updated(auth_url) == "2020-04-07T00:00:00Z"
    discovery = checkout / "keystone" / "api" / "discovery.py"
    source = discovery.read_text()
    changed = source.replace("'updated': '2020-04-07T00:00:00Z'", "'updated': '2026-12-07T00:00:00Z'")
    assert changed != source
    discovery.write_text(changed)
    began = time.monotonic()
    synced = run("sync", "keystone", "--lab", name, "--json")
    measured(f"labctl sync keystone (the real Keystone): {time.monotonic() - began:.0f} s")
    assert synced.code == 0, synced.out + synced.err
    report = json.loads(synced.out)["machines"]["ks"]
    steps = {s["name"]: s["state"] for s in report["steps"]}
    assert steps == {"code": "replaced", "service devstack@keystone.service": "ok",
                     "api http://127.0.0.1/identity/v3": "ok"}, report
    assert report["health"]["keystone"]["state"] == "ok", report
    assert updated(auth_url) == "2026-12-07T00:00:00Z"
    assert token(auth_url, creds["username"], creds["password"]) == 201

    # A new entry point: the project is reinstalled into DevStack's Python, then restarted.
    project = checkout / "pyproject.toml"
    scripts = project.read_text()
    assert 'keystone-status = "keystone.cmd.status:main"\n' in scripts
    project.write_text(scripts.replace('keystone-status = "keystone.cmd.status:main"\n',
                                       'keystone-status = "keystone.cmd.status:main"\n'
                                       'keystone-labctl = "keystone.cmd.status:main"\n'))
    began = time.monotonic()
    reinstalled = run("sync", "keystone", "--lab", name, "--json")
    measured(f"labctl sync keystone with a reinstall: {time.monotonic() - began:.0f} s")
    assert reinstalled.code == 0, reinstalled.out + reinstalled.err
    steps = {s["name"]: s["state"] for s in json.loads(reinstalled.out)["machines"]["ks"]["steps"]}
    assert steps.get("install") == "replaced" and steps["api http://127.0.0.1/identity/v3"] == "ok", steps
    there = run("exec", "ks", "--lab", name, "--", "test -x /opt/stack/data/venv/bin/keystone-labctl && echo there")
    assert there.code == 0 and "there" in there.out, there.out + there.err

    discovery.write_text(changed + "\nraise RuntimeError('broken on purpose')\n")
    began = time.monotonic()
    broken = run("sync", "keystone", "--lab", name, "--json")
    measured(f"labctl sync keystone, broken and rolled back: {time.monotonic() - began:.0f} s")
    assert broken.code == 1, broken.out + broken.err
    report = json.loads(broken.out)["machines"]["ks"]
    steps = {s["name"]: s for s in report["steps"]}
    # uwsgi runs on without its application (the API answers 500) or, where it needs one, stops.
    failed = [s for s in report["steps"] if s["state"] == "failed"]
    assert [s["name"] for s in failed] in (["api http://127.0.0.1/identity/v3"],
                                           ["service devstack@keystone.service"]), report
    assert "broken on purpose" in failed[0]["detail"], report
    assert steps["rollback"]["state"] == "replaced", report
    assert updated(auth_url) == "2026-12-07T00:00:00Z"  # the previous code, answering again
    assert token(auth_url, creds["username"], creds["password"]) == 201
