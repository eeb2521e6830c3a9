"""devstack.git_base and devstack.repo as a user writes them: what `plan` renders and refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from test_gitserver import git, make_mirror

from conftest import Result
from labctl.mirrors import host_address


def lab_file(folder: Path, devstack: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lab.yaml"
    path.write_text(f"name: mirrored\nnetwork: {{cidr: 192.168.170.0/24}}\nmachines:\n  - {{name: ks}}\n"
                    f"devstack:\n{devstack}")
    return path


def plan(run: Callable[..., Result], path: Path) -> tuple[Result, dict[str, object]]:
    result = run("plan", "-f", str(path), "--json")
    return result, (json.loads(result.out) if result.code == 0 else {})


@pytest.fixture
def mirrors(tmp_path: Path) -> Path:
    folder = tmp_path / "mirrors"
    for name in ("devstack", "keystone", "requirements"):
        make_mirror(folder, name)
    return folder


def test_a_folder_of_mirrors_becomes_gitbase_served_from_the_host(run: Callable[..., Result], tmp_path: Path,
                                                                  mirrors: Path) -> None:
    # A relative folder is taken from lab.yaml's folder.
    result, data = plan(run, lab_file(tmp_path / "course", "  git_base: ../mirrors\n"
                                                           "  localrc: {ENABLED_SERVICES: 'key,mysql'}\n"))
    assert result.code == 0, result.err
    devstack = data["devstack"]
    assert isinstance(devstack, dict)
    base = devstack["git_base"]
    assert base.startswith(f"git://{host_address('192.168.170.0/24')}/mirrors-") and base == \
        devstack["served"][0]["url"]
    assert devstack["served"][0] == {"folder": str(mirrors), "url": base, "repositories": 3, "as": "GIT_BASE"}
    # DevStack itself comes from the mirrors too.
    assert devstack["from"] == f"{base}/openstack/devstack.git"
    conf = Path(data["machines"][0]["local_conf"]).read_text()  # type: ignore[index]
    assert f"\nGIT_BASE={base}\n" in conf
    table = run("plan", "-f", str(tmp_path / "course" / "lab.yaml"))
    assert f"Git mirrors: {mirrors} (3 repositories)" in table.out


def test_a_url_is_passed_through(run: Callable[..., Result], tmp_path: Path) -> None:
    result, data = plan(run, lab_file(tmp_path, "  git_base: https://git.example.org/\n"))
    assert result.code == 0, result.err
    devstack = data["devstack"]
    assert isinstance(devstack, dict)
    assert devstack["git_base"] == "https://git.example.org" and devstack["served"] == []
    assert devstack["from"] == "https://git.example.org/openstack/devstack.git"
    assert "\nGIT_BASE=https://git.example.org\n" in Path(data["machines"][0]["local_conf"]).read_text()  # type: ignore[index]


def test_a_bare_devstack_repository_is_served_and_cloned(run: Callable[..., Result], tmp_path: Path,
                                                         mirrors: Path) -> None:
    result, data = plan(run, lab_file(tmp_path, f"  repo: {mirrors}/openstack/devstack.git\n  branch: stable/x\n"))
    assert result.code == 0, result.err
    devstack = data["devstack"]
    assert isinstance(devstack, dict)
    assert devstack["git_base"] is None
    assert devstack["from"].startswith(f"git://{host_address('192.168.170.0/24')}/devstack-")
    assert devstack["from"].endswith(".git") and devstack["served"][0]["repositories"] == 1


@pytest.mark.parametrize(("devstack", "message"), [
    ("  git_base: ./nowhere\n", "devstack.git_base: {tmp}/nowhere is no folder"),
    ("  git_base: ./empty\n", "devstack.git_base: {tmp}/empty holds no git repository"),
    ("  git_base: ./nodevstack\n", "devstack.git_base: {tmp}/nodevstack has no openstack/devstack.git"),
    ("  git_base: ./mirrors\n  localrc: {GIT_BASE: http://x}\n", "devstack.localrc.GIT_BASE: devstack.git_base"),
    ("  repo: ./empty\n", "devstack.repo: {tmp}/empty is neither a DevStack checkout"),
    ("  git_base: \"a\\0b\"\n", "devstack.git_base: expected a git URL or a folder"),
])
def test_wrong_mirrors_are_one_line_and_write_nothing(run: Callable[..., Result], tmp_path: Path, mirrors: Path,
                                                      labctl_home: Path, devstack: str, message: str) -> None:
    (tmp_path / "empty" / "openstack").mkdir(parents=True)
    make_mirror(tmp_path / "nodevstack", "keystone")
    result = run("plan", "-f", str(lab_file(tmp_path, devstack)))
    assert result.code == 2
    assert message.format(tmp=tmp_path) in result.err
    assert len(result.err.strip().splitlines()) <= 2 and "Traceback" not in result.err
    assert not (labctl_home / "labs" / "mirrored").exists()


def test_a_work_tree_checkout_is_pushed(run: Callable[..., Result], tmp_path: Path) -> None:
    from standin_devstack import make_repo

    repo = make_repo(tmp_path / "my-devstack")
    git("init", "-q", cwd=tmp_path)  # unrelated
    result, data = plan(run, lab_file(tmp_path, f"  repo: {repo}\n  git_base: https://opendev.org\n"))
    assert result.code == 0, result.err
    devstack = data["devstack"]
    assert isinstance(devstack, dict)
    assert devstack["from"] == f"{repo} (pushed as it is)"


def test_tokens_in_urls_are_never_printed(run: Callable[..., Result], tmp_path: Path) -> None:
    from labctl.mirrors import redact, url_secrets

    token = "ghp_0123456789abcdefABCDEF"
    result, _ = plan(run, lab_file(tmp_path, f"  repo: https://{token}@git.example.org/devstack\n"
                                                f"  git_base: https://bot:{token}@git.example.org\n"))
    assert result.code == 0, result.err
    assert token not in result.out + result.err
    table = run("plan", "-f", str(tmp_path / "lab.yaml"))
    assert token not in table.out and "https://****@git.example.org/devstack" in table.out
    assert redact("https://bot:pw@h/x") == "https://bot:****@h/x" and redact("https://h/x") == "https://h/x"
    assert url_secrets("https://git@h/x", f"https://{token}@h", "http://u:secret@proxy:3128") == [token, "secret"]


def test_what_stack_sh_would_clone_and_the_mirrors_lack_is_named_at_plan(run: Callable[..., Result],
                                                                         tmp_path: Path, mirrors: Path) -> None:
    """DevStack's default services need cinder, nova... which keystone-only mirrors lack: stack.sh
    would fail half an hour in at `git clone`; plan says so at once, with the services that need each."""
    refused = run("plan", "-f", str(lab_file(tmp_path / "a", f"  git_base: {mirrors}\n")))
    assert refused.code == 2
    assert "lacks what stack.sh will clone: openstack/nova.git (for n-api, n-api-meta, n-cond, n-cpu, n-sch on ks)" \
        in refused.err
    assert "openstack/cinder.git (for c-api, c-sch, c-vol on ks)" in refused.err and "tempest" in refused.err
    assert "devstack.disable_services: [c-api, c-sch, c-vol, g-api, horizon, n-api," in refused.err
    assert "mirrored" not in run("list").out  # nothing written

    # enable_service in a fragment counts too; disabling what is missing makes the lab fine.
    lab = lab_file(tmp_path / "b", f"  git_base: {mirrors}\n  localrc: {{ENABLED_SERVICES: 'key,mysql'}}\n"
                                   "  enable_services: [g-api]\n")
    assert "openstack/glance.git (for g-api on ks)" in run("plan", "-f", str(lab)).err
    for name in ("nova", "glance"):
        make_mirror(mirrors, name)
    lab = lab_file(tmp_path / "c", f"  git_base: {mirrors}\n  localrc: {{ENABLED_SERVICES: 'key,mysql'}}\n"
                                   "  enable_services: [g-api, n-api, n-cpu, n-novnc]\n")
    fine, data = plan(run, lab)
    assert fine.code == 0, fine.err
    # noVNC comes from GitHub, not GIT_BASE: said, not refused (some hosts reach GitHub).
    assert any("n-novnc: noVNC from https://github.com/novnc/novnc.git" in w for w in data["warnings"])  # type: ignore[attr-defined]


def test_the_services_a_local_conf_runs() -> None:
    from labctl.devstack_services import DEFAULT_SERVICES, enabled_services, repositories_needed
    from labctl.localconf import parse

    def services(text: str) -> list[str]:
        return enabled_services(parse("[[local|localrc]]\n" + text, "t"))

    assert services("") == list(DEFAULT_SERVICES)
    assert services("ENABLED_SERVICES='key,mysql'\nenable_service g-api n-cpu\ndisable_service mysql\n") == [
        "key", "g-api", "n-cpu"]
    assert services("disable_all_services\nenable_service key\n") == ["key"]
    assert repositories_needed(["key", "n-cpu", "n-novnc", "placement-client", "placement-api", "q-svc"]) == {
        "openstack/requirements.git": ["stack.sh"], "openstack/keystone.git": ["key"],
        "openstack/nova.git": ["n-cpu"], "openstack/placement.git": ["placement-api"],
        "openstack/neutron.git": ["q-svc"]}
