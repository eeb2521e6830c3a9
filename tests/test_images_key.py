"""What a stack depends on (labctl.images.key): an image is used only for the same stack, and a stale
one is named with why. Commits are read from the real mirrors of ../shared/mirrors and from
repositories made here (git runs for real; a URL is a file:// one: nothing reaches the network)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labctl.catalog import default_catalog
from labctl.images.key import (
    CommitUnknown,
    StackKey,
    branch_commit,
    branch_of,
    devstack_state,
    guest_digest,
    normalized_local_conf,
    repo_commits,
    stack_key,
    worktree_state,
)
from labctl.labfile import lab_from_dict

MIRRORS = Path(__file__).resolve().parent.parent.parent / "shared" / "mirrors"


def git(*argv: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", *argv], cwd=cwd, capture_output=True, text=True,
                          check=True, env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                                           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
                          ).stdout.strip()


def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "devstack"
    repo.mkdir()
    (repo / "stack.sh").write_text("#!/bin/bash\necho stack\n")
    git("init", "-q", "-b", "master", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    return repo


def test_a_machines_own_addresses_and_passwords_are_taken_out_of_local_conf() -> None:
    text = ("[[local|localrc]]\nADMIN_PASSWORD=s3cretLongValue\nHOST_IP=10.10.0.1\nSERVICE_HOST=10.10.0.1\n"
            "OTHER=10.10.0.10\nDATABASE_PASSWORD=s3cretLongValue2\n")
    out = normalized_local_conf(text, ["s3cretLongValue", "s3cretLongValue2"], ["10.10.0.1"])
    assert out == ("[[local|localrc]]\nADMIN_PASSWORD=<password>\nHOST_IP=<address>\nSERVICE_HOST=<address>\n"
                   "OTHER=10.10.0.10\nDATABASE_PASSWORD=<password>\n")  # 10.10.0.10 is another address
    # Two machines that differ only in their own values: one stack.
    theirs = text.replace("s3cretLongValue", "AnotherPassw0rd").replace("10.10.0.1\n", "10.10.0.7\n")
    other = normalized_local_conf(theirs, ["AnotherPassw0rd", "AnotherPassw0rd2"], ["10.10.0.7"])
    assert other == out
    # labctl's header names the lab: two labs' machines of the same stack are one stack.
    headed = normalized_local_conf("# local.conf of machine devstack in lab a\n" + text, ["s3cretLongValue",
                                   "s3cretLongValue2"], ["10.10.0.1"])
    assert headed == out


def key(local_conf: str = "[[local|localrc]]\nA=1\n", **commits: str) -> StackKey:
    return stack_key(box="labctl/debian-12", box_version="12.0.1", guest="g1", devstack="devstack master abc",
                     local_conf=local_conf, commits={"openstack/keystone.git": "a" * 40, **commits})


def test_a_stale_image_is_named_with_every_reason() -> None:
    image = key()
    assert key().digest == image.digest and key().differences(image) == []
    now = stack_key(box="labctl/debian-12", box_version="12.0.2", guest="g1", devstack="devstack stable/2026.1 def",
                    local_conf="[[local|localrc]]\nA=2\nB=3\n",
                    commits={"openstack/keystone.git": "b" * 40, "openstack/nova.git": "c" * 40})
    assert now.digest != image.digest
    assert now.differences(image) == [
        "box: labctl/debian-12 12.0.1 -> labctl/debian-12 12.0.2",
        "devstack: devstack master abc -> devstack stable/2026.1 def",
        "local.conf: -A=1, +A=2, +B=3",
        f"repo openstack/keystone.git: {'a' * 12} -> {'b' * 12}",
        f"repo openstack/nova.git: new ({'c' * 12})",
    ]
    assert image.differences(now)[-1] == "repo openstack/nova.git: no longer used"


def test_commits_are_read_from_the_mirrors_and_a_missing_branch_is_named() -> None:
    keystone = MIRRORS / "openstack" / "keystone.git"
    if not keystone.is_dir():
        pytest.skip("no mirrors in ../shared/mirrors")
    # A copied mirror without its refs/ folder, as these are: git itself does not take it for a repository.
    packed = {line.split()[1]: line.split()[0] for line in (keystone / "packed-refs").read_text().splitlines()
              if line.startswith(tuple("0123456789abcdef"))}
    assert branch_commit(str(keystone), "master") == packed["refs/heads/master"]
    assert branch_commit(str(keystone), "stable/2026.1") != branch_commit(str(keystone), "master")
    with pytest.raises(CommitUnknown) as err:
        branch_commit(str(keystone), "stable/1999.1")
    assert "stable/1999.1" in err.value.message and err.value.hint and "--fresh" in err.value.hint


def test_a_url_is_asked_with_ls_remote_and_a_folder_read_as_git_does(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "two", cwd=repo)
    git("pack-refs", "--all", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "three", cwd=repo)  # a loose ref over the packed one
    assert branch_commit(str(repo), "master") == git("rev-parse", "HEAD", cwd=repo)
    assert branch_commit(f"file://{repo}", "master") == git("rev-parse", "HEAD", cwd=repo)
    with pytest.raises(CommitUnknown, match="it has no such branch"):
        branch_commit(f"file://{repo}", "stable/none")
    with pytest.raises(CommitUnknown, match="cannot read branch master of file:///nowhere"):
        branch_commit("file:///nowhere", "master")


def test_a_checkouts_uncommitted_changes_and_new_files_make_another_stack(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    clean = worktree_state(repo)
    assert clean == git("rev-parse", "HEAD", cwd=repo)
    (repo / "stack.sh").write_text("#!/bin/bash\necho changed\n")
    edited = worktree_state(repo)
    assert edited.startswith(clean + "+") and worktree_state(repo) == edited  # the same state, the same key
    (repo / "lib").mkdir()
    (repo / "lib" / "new").write_bytes(b"\xff\xfe binary")
    with_new = worktree_state(repo)
    assert with_new not in (clean, edited)
    (repo / "lib" / "new").write_bytes(b"\xff\xfe other")
    assert worktree_state(repo) != with_new  # a new file's content counts, not only its name


def test_the_repositories_stack_sh_will_clone_with_their_branches(tmp_path: Path) -> None:
    if not (MIRRORS / "openstack" / "keystone.git").is_dir():
        pytest.skip("no mirrors in ../shared/mirrors")
    lab = lab_from_dict({"name": "k", "machines": [{"name": "m"}],
                         "devstack": {"git_base": str(MIRRORS), "branch": "stable/2026.1"}}, default_catalog())
    conf = "[[local|localrc]]\nENABLED_SERVICES=key,mysql\n"
    commits = repo_commits(lab, conf)
    assert set(commits) == {"openstack/keystone.git", "openstack/requirements.git"}
    stable = branch_commit(str(MIRRORS / "openstack" / "keystone.git"), "stable/2026.1")
    assert commits["openstack/keystone.git"] == stable
    # A project's own branch, set in local.conf, is the one read.
    master = repo_commits(lab, conf + "KEYSTONE_BRANCH=master\n")["openstack/keystone.git"]
    assert master == branch_commit(str(MIRRORS / "openstack" / "keystone.git"), "master") != stable
    assert branch_of("keystone", {"KEYSTONE_BRANCH": "x"}, "master") == "x"
    assert branch_of("requirements", {}, "stable/2026.1") == "stable/2026.1"


def test_libraries_from_git_and_a_projects_own_repo_are_part_of_the_stack(tmp_path: Path) -> None:
    """LIBS_FROM_GIT's libraries are cloned by stack.sh too: a checkout's working tree, or the commit of
    the library's branch where its <PREFIX>_REPO (DevStack's own variable) or the mirrors say; a
    project's <NAME>_REPO set in local.conf is read there, not in the mirrors."""
    if not (MIRRORS / "openstack" / "keystone.git").is_dir():
        pytest.skip("no mirrors in ../shared/mirrors")
    lib = checkout(tmp_path)
    raw = {"name": "k", "machines": [{"name": "m"}],
           "devstack": {"git_base": str(MIRRORS), "branch": "stable/2026.1", "projects": {"oslo.config": str(lib)}}}
    lab = lab_from_dict(raw, default_catalog())
    conf = "[[local|localrc]]\nENABLED_SERVICES=key,mysql\nLIBS_FROM_GIT=oslo.config\n"
    commits = repo_commits(lab, conf)
    assert commits["openstack/oslo.config.git"] == f"{lib} {worktree_state(lib)}"
    (lib / "stack.sh").write_text("changed\n")
    assert repo_commits(lab, conf)["openstack/oslo.config.git"] != commits["openstack/oslo.config.git"]
    # A library the mirrors lack: its commit cannot be read (up then stacks, saying why).
    with pytest.raises(CommitUnknown):
        repo_commits(lab, conf.replace("oslo.config", "oslo.config,oslo.log"))
    # Its own repository, in DevStack's variable for it (OSLOLOG_REPO), on its own branch.
    (tmp_path / "other").mkdir()
    other = checkout(tmp_path / "other")
    mine = repo_commits(lab, conf + f"LIBS_FROM_GIT=oslo.log\nOSLOLOG_REPO={other}\nOSLOLOG_BRANCH=master\n")
    assert mine["openstack/oslo.log.git"] == git("rev-parse", "HEAD", cwd=other)
    keystone = repo_commits(lab, conf + f"KEYSTONE_REPO={other}\nKEYSTONE_BRANCH=master\n")
    assert keystone["openstack/keystone.git"] == git("rev-parse", "HEAD", cwd=other)


def test_a_url_is_asked_outside_any_strangers_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """labctl runs from a lab folder, which may sit in a stranger's git repository whose config names
    an ssh program: `git ls-remote` of a plugin's ssh URL must not use it."""
    folder = checkout(tmp_path)
    ran = tmp_path / "ran"
    program = tmp_path / "evil.sh"
    program.write_text(f"#!/bin/sh\necho \"$*\" >> {ran}\nexit 1\n")
    program.chmod(0o755)
    git("config", "core.sshCommand", str(program), cwd=folder)
    monkeypatch.chdir(folder)
    with pytest.raises(CommitUnknown):
        branch_commit("ssh://git@127.0.0.1:9/plugin.git", "master")
    assert not ran.exists(), ran.read_text()


def test_a_stack_whose_services_remember_their_host_serves_only_that_host(tmp_path: Path) -> None:
    """Nova (and Neutron, OVN) register the host's name and address in their databases: their image is
    another stack for a machine of another name or address; a keystone-only stack's is not."""
    if not (MIRRORS / "openstack" / "nova.git").is_dir():
        pytest.skip("no mirrors in ../shared/mirrors")
    from labctl.images.key import machine_key
    from labctl.model import Lab

    def lab(name: str, machine: str) -> Lab:
        return lab_from_dict({"name": name, "network": {"cidr": "10.77.0.0/24"}, "machines": [{"name": machine}],
                              "devstack": {"git_base": str(MIRRORS), "branch": "stable/2026.1"}}, default_catalog())

    def digest(conf: str, name: str, machine: str) -> str:
        the_lab = lab(name, machine)
        return machine_key(the_lab, machine, conf, [], "box.img").digest

    keystone = "[[local|localrc]]\nENABLED_SERVICES=key,mysql\n"
    compute = "[[local|localrc]]\nENABLED_SERVICES=key,mysql,placement-api,n-api,n-cpu,n-cond,n-sch\n"
    assert digest(keystone, "a", "dev1") == digest(keystone, "b", "dev2")
    assert digest(compute, "a", "dev1") == digest(compute, "b", "dev1")  # same name, same address
    assert digest(compute, "a", "dev1") != digest(compute, "a", "dev2")
    key = machine_key(lab("a", "dev1"), "dev1", compute, [], "box.img")
    assert key.parts["host (its services remember it)"] == "dev1 10.77.0.10"


def test_devstack_from_a_checkout_is_its_working_tree(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    lab = lab_from_dict({"name": "k", "machines": [{"name": "m"}], "devstack": {"repo": str(repo)}},
                        default_catalog())
    before = devstack_state(lab)
    (repo / "stack.sh").write_text("#!/bin/bash\necho edited\n")
    assert devstack_state(lab) != before


def test_labctls_part_in_the_guest_has_a_digest() -> None:
    assert len(guest_digest()) == 16 and guest_digest() == guest_digest()
