"""A developer's own checkout in the machines (devstack.projects, labctl.devloop): its working tree,
uncommitted changes and new files included, becomes one commit in labctl's served copy, which a real
git daemon serves and git clones, and the checkout itself is never written to. Real git throughout."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ports import free_port

from conftest import Result
from labctl.devloop import worktree
from labctl.devloop.worktree import WorktreeError, snapshot
from labctl.gitserver import GitServer, prepare
from labctl.mirrors import project_served

ENV = {"GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "d@d", "GIT_COMMITTER_NAME": "dev",
       "GIT_COMMITTER_EMAIL": "d@d", "PATH": "/usr/bin:/bin"}


def git(*argv: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", *argv], cwd=cwd, capture_output=True, text=True,
                          check=True, env={**ENV, "HOME": str(cwd)}).stdout.strip()


def keystone_checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "src" / "keystone"
    (repo / "keystone").mkdir(parents=True)
    (repo / "keystone" / "version.py").write_text("VERSION = '1.0'\n")
    (repo / "old.txt").write_text("going away\n")
    (repo / ".gitignore").write_text(".tox/\n")
    git("init", "-q", "-b", "feature", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    return repo


def state_of(repo: Path) -> tuple[str, str, str, str]:
    """What a developer sees of their repository: status, HEAD, refs, and the index file's bytes."""
    index = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    return (git("status", "--porcelain", cwd=repo), git("rev-parse", "HEAD", cwd=repo),
            git("for-each-ref", cwd=repo), index)


def test_the_working_tree_is_one_commit_in_the_copy_and_the_checkout_is_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = keystone_checkout(tmp_path)
    head = git("rev-parse", "HEAD", cwd=repo)
    (repo / "keystone" / "version.py").write_text("VERSION = '1.0-mine'\n")  # not committed
    (repo / "keystone" / "new.py").write_text("NEW = True\n")  # not even added
    (repo / "old.txt").unlink()
    (repo / ".tox").mkdir()
    (repo / ".tox" / "huge").write_bytes(b"x" * 1000)  # ignored: stays out
    before = state_of(repo)
    objects_before = git("count-objects", "-v", cwd=repo)
    # The user's own git settings must not steer labctl's git (a GIT_DIR of theirs, say).
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "their-index"))
    copy = prepare(project_served(repo), tmp_path / "cache" / "git")
    commit = snapshot(repo, copy)
    assert commit != head
    assert git("--git-dir", str(copy), "rev-parse", "labctl-worktree^", cwd=tmp_path) == head
    shown = git("--git-dir", str(copy), "show", "labctl-worktree:keystone/version.py", cwd=tmp_path)
    assert shown == "VERSION = '1.0-mine'"
    files = git("--git-dir", str(copy), "ls-tree", "-r", "--name-only", "labctl-worktree", cwd=tmp_path).split()
    assert sorted(files) == [".gitignore", "keystone/new.py", "keystone/version.py"]
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert state_of(repo) == before and git("count-objects", "-v", cwd=repo) == objects_before
    assert not (tmp_path / "their-index").exists() and not (copy / "labctl-index").exists()
    # Nothing changed since: the same commit again, not a new one of the same tree (git dates commits
    # by the second: a second later, a new commit would have another id).
    time.sleep(1.1)
    assert snapshot(repo, copy) == commit
    (repo / "keystone" / "new.py").write_text("NEW = False\n")
    assert snapshot(repo, copy) not in (commit, head)


def test_a_clean_checkout_is_its_head(tmp_path: Path) -> None:
    repo = keystone_checkout(tmp_path)
    copy = prepare(project_served(repo), tmp_path / "cache" / "git")
    assert snapshot(repo, copy) == git("rev-parse", "HEAD", cwd=repo)


def test_a_build_folder_left_out_of_gitignore_is_refused_with_a_hint(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo = keystone_checkout(tmp_path)
    (repo / "build").mkdir()
    (repo / "build" / "big.bin").write_bytes(os.urandom(4096))
    monkeypatch.setattr(worktree, "MAX_NEW_BYTES", 1024)
    copy = prepare(project_served(repo), tmp_path / "cache" / "git")
    with pytest.raises(WorktreeError) as err:
        snapshot(repo, copy)
    assert "files git does not track yet" in err.value.message and err.value.hint and ".gitignore" in err.value.hint
    assert "labctl-worktree" not in git("--git-dir", str(copy), "branch", "--list", cwd=tmp_path)


def test_a_strangers_checkout_config_never_runs_a_program_on_the_host(tmp_path: Path) -> None:
    """A lab folder's checkout whose .git/config names programs (an fsmonitor hook, an external diff, a
    clean filter the checkout's .gitattributes applies): reading its working tree for the image key,
    and taking it into the served copy, run none of them, and still see the working tree."""
    from labctl.images.key import worktree_state

    repo = keystone_checkout(tmp_path)
    ran = tmp_path / "ran"
    program = tmp_path / "evil.sh"
    program.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {ran}\ncat\n")
    program.chmod(0o755)
    for key in ("core.fsmonitor", "diff.external", "filter.evil.clean", "filter.evil.smudge"):
        git("config", key, str(program), cwd=repo)
    (repo / ".gitattributes").write_text("* filter=evil\n")
    (repo / "keystone" / "version.py").write_text("VERSION = '1.1'\n")
    state = worktree_state(repo)
    assert not ran.exists(), ran.read_text()
    head = git("rev-parse", "HEAD", cwd=repo)
    assert state.startswith(head + "+")
    copy = prepare(project_served(repo), tmp_path / "cache" / "git")
    commit = snapshot(repo, copy)
    assert not ran.exists(), ran.read_text()
    shown = git("--git-dir", str(copy), "show", f"{commit}:keystone/version.py", cwd=tmp_path)
    assert shown == "VERSION = '1.1'"
    # The same working tree is the same state; a change is another.
    assert worktree_state(repo) == state
    (repo / "keystone" / "version.py").write_text("VERSION = '1.2'\n")
    assert worktree_state(repo) not in (state, head)
    assert not ran.exists(), ran.read_text()


def test_a_linked_worktree_is_read_through_its_pointer(tmp_path: Path) -> None:
    """`git worktree add` makes a checkout whose .git is a file naming its git dir."""
    from labctl.images.key import worktree_state

    repo = keystone_checkout(tmp_path)
    linked = tmp_path / "linked"
    git("worktree", "add", "-q", "-b", "other", str(linked), cwd=repo)
    assert (linked / ".git").is_file()
    assert worktree_state(linked) == git("rev-parse", "HEAD", cwd=linked)
    (linked / "keystone" / "version.py").write_text("VERSION = 'linked'\n")
    assert worktree_state(linked).startswith(git("rev-parse", "HEAD", cwd=linked) + "+")
    # A .git file that names nothing readable is an error naming it, not a traceback.
    from labctl.errors import LabctlError

    (linked / ".git").write_text("not a pointer\n")
    with pytest.raises(LabctlError) as err:
        worktree_state(linked)
    assert "neither a folder nor a gitdir: pointer" in err.value.message
    (linked / ".git").write_text("gitdir: /nonexistent/x\n")
    with pytest.raises(LabctlError) as err:
        worktree_state(linked)
    assert str(linked) in err.value.message, err.value.message


def test_git_daemon_serves_the_working_tree_to_a_clone(tmp_path: Path) -> None:
    """What a machine's stack.sh does with KEYSTONE_REPO and KEYSTONE_BRANCH: clone that branch."""
    repo = keystone_checkout(tmp_path)
    (repo / "keystone" / "version.py").write_text("VERSION = '2.0-wip'\n")
    root = tmp_path / "cache" / "git"
    copy = prepare(project_served(repo), root)
    snapshot(repo, copy)
    port = free_port()
    with GitServer(root, "127.0.0.1", tmp_path / "daemon.log", port) as server:
        server.start([copy])
        clone = tmp_path / "machine" / "keystone"
        git("clone", "-q", "--branch", "labctl-worktree", f"git://127.0.0.1:{port}/{copy.name}", str(clone),
            cwd=tmp_path)
    assert (clone / "keystone" / "version.py").read_text() == "VERSION = '2.0-wip'\n"


def test_lab_yaml_projects_are_checked_and_rendered(run: Callable[..., Result], isolated_home: Path,
                                                    labctl_home: Path, tmp_path: Path) -> None:
    repo = keystone_checkout(tmp_path)
    lab = "name: dev\nmachines:\n  - {name: dev1}\ndevstack:\n  projects:\n"
    (isolated_home / "lab.yaml").write_text(lab + f"    keystone: {repo}\n")
    planned = run("plan")
    assert planned.code == 0, planned.err
    conf = (labctl_home / "labs" / "dev" / "machines" / "dev1" / "local.conf").read_text()
    assert "KEYSTONE_BRANCH=labctl-worktree" in conf
    assert "KEYSTONE_REPO=git://" in conf and f"/{project_served(repo).name}.git" in conf
    # The plan says which host folder the machines get, and as what (not as GIT_BASE).
    assert f"Your checkout {repo}, its working tree: served to the machines at git://" in planned.out
    assert "(KEYSTONE_REPO)" in planned.out and "GIT_BASE" not in planned.out
    served = json.loads(run("plan", "--json").out)["devstack"]["served"]
    assert [(s["folder"], s["as"]) for s in served] == [(str(repo), "KEYSTONE_REPO")]
    refused = {
        "    keystone: https://opendev.org/openstack/keystone\n": "is a URL",
        f"    keystone: {tmp_path}\n": "is no git checkout",
        f"    oslo.nothing: {repo}\n": "nor a library it installs from git",
        f"    keystone: {repo}\n  localrc: {{KEYSTONE_BRANCH: master}}\n": "devstack.projects.keystone sets it",
        f"    'kEy; rm -rf /': {repo}\n": "devstack.projects.kEy; rm -rf /",
    }
    for text, words in refused.items():
        (isolated_home / "lab.yaml").write_text(lab + text)
        result = run("plan")
        assert result.code == 2 and words in result.err and "Traceback" not in result.err, (text, result.err)


def test_a_library_checkout_is_rendered_with_devstacks_own_variables_and_named_in_libs_from_git(
        run: Callable[..., Result], isolated_home: Path, labctl_home: Path, tmp_path: Path) -> None:
    """oslo.config's variables are OSLOCFG_REPO and OSLOCFG_BRANCH (DevStack's stackrc), and stack.sh
    installs it from PyPI unless LIBS_FROM_GIT names it: labctl adds it to the lab's own list."""
    repo = keystone_checkout(tmp_path)
    conf_path = labctl_home / "labs" / "dev" / "machines" / "dev1" / "local.conf"
    lab = f"name: dev\nmachines:\n  - {{name: dev1}}\ndevstack:\n  projects: {{oslo.config: {repo}}}\n"
    for localrc, named in (("", "LIBS_FROM_GIT=oslo.config"),
                           ("  localrc: {LIBS_FROM_GIT: keystoneauth}\n", "LIBS_FROM_GIT=keystoneauth,oslo.config"),
                           ("  localrc: {LIBS_FROM_GIT: ALL}\n", "LIBS_FROM_GIT=ALL")):
        (isolated_home / "lab.yaml").write_text(lab + localrc)
        planned = run("plan")
        assert planned.code == 0, planned.err
        conf = conf_path.read_text()
        assert "OSLOCFG_BRANCH=labctl-worktree" in conf and "OSLOCFG_REPO=git://" in conf
        assert "OSLO_CONFIG_REPO" not in conf
        assert [line for line in conf.splitlines() if line.startswith("LIBS_FROM_GIT=")] == [named], conf
    (isolated_home / "lab.yaml").write_text(lab + "  localrc: {OSLOCFG_BRANCH: master}\n")
    refused = run("plan")
    assert refused.code == 2 and "devstack.localrc.OSLOCFG_BRANCH: devstack.projects.oslo.config sets it" \
        in refused.err, refused.err


def test_a_library_sync_restarts_every_service_and_asks_every_api(tmp_path: Path) -> None:
    """Any service may import a library: every devstack@ unit restarts, every API that answered is asked."""
    from labctl.catalog import default_catalog
    from labctl.devloop.sync import APIS, project_of, sync_spec
    from labctl.labfile import lab_from_dict

    repo = keystone_checkout(tmp_path)
    raw = {"name": "dev", "machines": [{"name": "dev1"}], "devstack": {"projects": {"oslo.config": str(repo)}}}
    lab = lab_from_dict(raw, default_catalog())
    spec = sync_spec(lab, project_of(lab, "oslo.config"), 120)
    assert spec["dir"] == "/opt/stack/oslo.config" and spec["prefixes"] == [""] and spec["units"] == []
    assert spec["apis"] == [f"http://127.0.0.1{p}" for paths in APIS.values() for p in paths]
    assert "http://127.0.0.1/identity/v3" in spec["apis"] and "http://127.0.0.1/compute/v2.1" in spec["apis"]


def test_sync_is_told_the_projects_services_and_refuses_a_project_the_lab_does_not_map(tmp_path: Path) -> None:
    from labctl.catalog import default_catalog
    from labctl.devloop.sync import project_of, sync_spec
    from labctl.errors import LabctlError
    from labctl.labfile import lab_from_dict

    repo = keystone_checkout(tmp_path)
    raw = {"name": "dev", "machines": [{"name": "dev1"}], "devstack": {"projects": {"keystone": str(repo)}}}
    lab = lab_from_dict(raw, default_catalog())
    spec = sync_spec(lab, project_of(lab, "keystone"), 120)
    assert spec["dir"] == "/opt/stack/keystone" and spec["branch"] == "labctl-worktree"
    assert spec["url"] == f"git://{lab.cidr.rsplit('.', 1)[0]}.1/{project_served(repo).name}.git"
    assert spec["prefixes"] == ["keystone"] and spec["timeout"] == 120
    assert spec["apis"] == ["http://127.0.0.1/identity/v3"]  # DevStack's Apache, inside the machine
    with pytest.raises(LabctlError) as err:
        project_of(lab, "nova")
    assert "stacks no checkout of nova (devstack.projects: keystone)" in err.value.message
    assert err.value.hint and "projects: {nova: ~/src/nova}" in err.value.hint


def test_the_sync_script_is_python(tmp_path: Path) -> None:
    import ast

    from labctl.devloop.guest import SYNC_SCRIPT

    ast.parse(SYNC_SCRIPT)


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers GETs with the statuses of its server's `statuses` list, in order, then its last one."""

    def do_GET(self) -> None:
        statuses: list[int] = self.server.statuses  # type: ignore[attr-defined]
        self.server.asked += 1  # type: ignore[attr-defined]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[Callable[[list[int]], tuple[str, http.server.HTTPServer]]]:
    """A real HTTP server on loopback answering the statuses it is given."""
    servers: list[http.server.HTTPServer] = []

    def serve(statuses: list[int]) -> tuple[str, http.server.HTTPServer]:
        server = http.server.HTTPServer(("127.0.0.1", 0), _Answers)
        server.statuses, server.asked = statuses, 0  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/identity/v3", server

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def probe() -> dict[str, Any]:
    """The sync script's API probe, as it runs inside the machine."""
    from labctl.devloop.guest import PROBE

    space: dict[str, Any] = {}
    exec(compile(PROBE, "probe", "exec"), space)  # noqa: S102 - labctl's own script text
    return space


def test_an_api_without_its_application_fails_at_once_and_one_still_starting_is_waited_for(
        api: Callable[[list[int]], tuple[str, http.server.HTTPServer]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9/")  # a proxy that is not there: never asked
    space = probe()
    broken, server = api([500])  # uwsgi whose application failed to import answers every request 500
    ok, words = space["serves"](broken, space["time"].monotonic() + 60, pause=0.01)
    assert (ok, words, server.asked) == (False, f"{broken} answers 500", 3)
    starting, server = api([503, 503, 500, 200])  # Apache before uwsgi listens, then the app loading
    ok, words = space["serves"](starting, space["time"].monotonic() + 60, pause=0.01)
    assert (ok, words, server.asked) == (True, f"{starting} answers 200", 4)
    assert space["answer"](starting) == 200
    gone = starting.rsplit(":", 1)[0] + ":9/identity/v3"  # nothing listens: waited for until the deadline
    ok, words = space["serves"](gone, space["time"].monotonic() + 0.2, pause=0.05)
    assert (ok, words) == (False, f"{gone} answers nothing")
    assert space["answer"](gone) is None


def test_the_sync_script_asks_only_the_apis_that_answered_before_it(tmp_path: Path) -> None:
    """An API that did not answer before the sync (not this machine's, or a stand-in's) is not asked
    after it: what worked before must work after, nothing more."""
    from labctl.devloop.guest import SYNC_SCRIPT

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"dir": str(tmp_path / "absent"), "apis": ["http://127.0.0.1:9/identity/v3"]}))
    done = subprocess.run([sys.executable, "-c", SYNC_SCRIPT, str(spec)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["name"], line["state"]) for line in lines] == [("code", "present")]
    assert not spec.exists()  # the spec (it may name secrets) is gone at once
