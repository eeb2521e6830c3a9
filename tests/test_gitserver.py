"""Git mirrors served from the host: the cache's copy of a mirror folder (damaged ones included), and
the real `git daemon` serving it, cloned from with the real git over git:// on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ports import free_port

from conftest import REPO, require_tool
from labctl.errors import LabctlError
from labctl.gitserver import GitServer, MirrorError, prepare
from labctl.mirrors import Served, served_name

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_NOSYSTEM": "1", "PATH": os.environ["PATH"]}
SHARED_MIRRORS = REPO.parent / "shared" / "mirrors"


def git(*argv: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**GIT_ENV, "HOME": str(cwd or Path.cwd())}
    return subprocess.run(["git", *argv], cwd=cwd, env=env, capture_output=True, text=True, check=check,
                          timeout=60)


def make_mirror(folder: Path, name: str, content: str = "one") -> Path:
    """<folder>/openstack/<name>.git: a bare, shallow mirror with branches master and stable/x."""
    work = folder.parent / f"work-{folder.name}-{name}"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "master", cwd=work)
    for i in range(3):
        (work / "file").write_text(f"{content} {i}\n")
        git("add", "file", cwd=work)
        git("commit", "-q", "-m", f"commit {i}", cwd=work)
    git("branch", "stable/x", cwd=work)
    dest = folder / "openstack" / f"{name}.git"
    dest.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", "--depth", "1", "--no-single-branch", f"file://{work}", str(dest))
    return dest


@pytest.fixture
def mirrors(tmp_path: Path) -> Path:
    require_tool("git")
    folder = tmp_path / "mirrors"
    for name in ("devstack", "keystone"):
        make_mirror(folder, name)
    return folder


def damage(repo: Path) -> None:
    """What copying a mirror with a tool that drops empty folders does: no refs/ (and read-only)."""
    for sub in ("refs/heads", "refs/tags", "refs"):
        (repo / sub).rmdir()
    for top, _dirs, files in os.walk(repo):
        for name in files:
            os.chmod(Path(top) / name, 0o444)


def test_a_damaged_read_only_mirror_is_served_from_a_working_copy(mirrors: Path, tmp_path: Path) -> None:
    damage(mirrors / "openstack" / "keystone.git")
    assert git("--git-dir", str(mirrors / "openstack" / "keystone.git"), "log", check=False).returncode != 0
    served = Served(mirrors, served_name(mirrors), True)
    root = tmp_path / "cache" / "git"
    copy = prepare(served, root)
    assert copy == root / served.name
    port = free_port()
    with GitServer(root, "127.0.0.1", tmp_path / "git-daemon.log", port=port) as server:
        server.start([copy])
        url = f"git://127.0.0.1:{port}/{served.name}/openstack/keystone.git"
        # As DevStack's git_clone does it: clone without checkout, fetch the branch, check it out.
        git("clone", "-q", "--no-checkout", url, str(tmp_path / "keystone"))
        git("fetch", "-q", "origin", "stable/x", cwd=tmp_path / "keystone")
        git("checkout", "-q", "FETCH_HEAD", cwd=tmp_path / "keystone")
        assert (tmp_path / "keystone" / "file").read_text() == "one 2\n"
        # Nothing can be pushed.
        pushed = git("push", url, "HEAD:refs/heads/evil", cwd=tmp_path / "keystone", check=False)
        assert pushed.returncode != 0
    assert "keystone.git" in (tmp_path / "git-daemon.log").read_text()


def test_the_copy_is_made_again_only_when_the_source_changed(mirrors: Path, tmp_path: Path) -> None:
    served = Served(mirrors, served_name(mirrors), True)
    root = tmp_path / "cache"
    copy = prepare(served, root)
    stamp = (copy / ".labctl-source.json").stat().st_mtime_ns
    assert prepare(served, root) == copy and (copy / ".labctl-source.json").stat().st_mtime_ns == stamp
    work = tmp_path / "work-mirrors-keystone"
    (work / "file").write_text("newer\n")
    git("commit", "-q", "-am", "newer", cwd=work)
    git("push", "-q", str(mirrors / "openstack" / "keystone.git"), "master", cwd=work)
    copy = prepare(served, root)
    log = git("--git-dir", str(copy / "openstack" / "keystone.git"), "log", "-1", "--format=%s", "master")
    assert log.stdout.strip() == "newer"
    assert not [p for p in root.iterdir() if "partial" in p.name or ".old-" in p.name]


def test_the_copy_takes_nothing_but_the_repository(mirrors: Path, tmp_path: Path) -> None:
    """A stranger's mirror: its config, hooks and alternates stay behind."""
    keystone = mirrors / "openstack" / "keystone.git"
    with (keystone / "config").open("a") as config:
        config.write("[core]\n\tfsmonitor = touch /tmp/labctl-pwned\n[uploadpack]\n\tallowAnySHA1InWant = true\n")
    (keystone / "hooks" / "post-update").write_text("#!/bin/sh\ntouch /tmp/labctl-pwned\n")
    copy = prepare(Served(mirrors, served_name(mirrors), True), tmp_path / "cache")
    ks = copy / "openstack" / "keystone.git"
    assert "fsmonitor" not in (ks / "config").read_text() and "uploadpack" not in (ks / "config").read_text()
    assert not (ks / "hooks").exists()


def test_alternates_and_links_out_of_the_mirror_are_refused(mirrors: Path, tmp_path: Path) -> None:
    other = make_mirror(tmp_path / "elsewhere", "secret", content="private")
    keystone = mirrors / "openstack" / "keystone.git"
    # A repository whose objects live elsewhere on the host: the copy drops the alternates, so it
    # is not usable alone, and says so.
    borrowed = make_mirror(tmp_path / "borrowing", "nova")
    git("--git-dir", str(borrowed), "repack", "-a", "-d", "-q")
    for pack in (borrowed / "objects" / "pack").iterdir():
        pack.unlink()
    (borrowed / "objects" / "info" / "alternates").write_text(f"{other / 'objects'}\n")
    with pytest.raises(MirrorError, match="not a usable git repository"):
        prepare(Served(tmp_path / "borrowing", "borrowing", True), tmp_path / "cache")

    (keystone / "objects" / "pack" / "extra.pack").symlink_to("/etc/passwd")
    with pytest.raises(MirrorError, match=r"symbolic link|not a plain file"):
        prepare(Served(mirrors, served_name(mirrors), True), tmp_path / "cache")


def test_a_folder_with_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "openstack").mkdir(parents=True)
    with pytest.raises(MirrorError, match=r"holds no git repository laid out as FOLDER/openstack/NAME\.git"):
        prepare(Served(tmp_path / "empty", "empty", True), tmp_path / "cache")


def test_only_the_folders_given_are_served(mirrors: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    served = prepare(Served(mirrors, "one", True), root)
    other = make_mirror(tmp_path / "second", "nova")
    hidden = prepare(Served(other, "two", False), root)
    port = free_port()
    with GitServer(root, "127.0.0.1", tmp_path / "log", port=port) as server:
        server.start([served])
        assert git("ls-remote", f"git://127.0.0.1:{port}/one/openstack/devstack.git").returncode == 0
        refused = git("ls-remote", f"git://127.0.0.1:{port}/two.git", check=False)
        assert refused.returncode != 0 and hidden.is_dir()
        escape = git("ls-remote", f"git://127.0.0.1:{port}/one/../two.git", check=False)
        assert escape.returncode != 0


def test_a_taken_port_is_a_clear_error(mirrors: Path, tmp_path: Path) -> None:
    copy = prepare(Served(mirrors, "one", True), tmp_path / "cache")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = int(busy.getsockname()[1])
        server = GitServer(tmp_path / "cache", "127.0.0.1", tmp_path / "log", port=port)
        with pytest.raises(LabctlError, match=f"could not serve the mirrors on 127.0.0.1:{port}"):
            server.start([copy])


def test_a_killed_labctl_leaves_no_git_daemon(mirrors: Path, tmp_path: Path) -> None:
    copy = prepare(Served(mirrors, "one", True), tmp_path / "cache")
    port = free_port()
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from labctl.gitserver import GitServer
        GitServer(Path({str(tmp_path / 'cache')!r}), "127.0.0.1", Path({str(tmp_path / 'log')!r}),
                  port={port}).start([Path({str(copy)!r})])
        print("serving", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
    assert git("ls-remote", f"git://127.0.0.1:{port}/one/openstack/keystone.git").returncode == 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("git daemon still serves after labctl was killed")


def test_the_shared_mirrors_of_the_real_devstack_are_served(tmp_path: Path) -> None:
    """../shared/mirrors/: read-only, shallow, and without refs/ folders, as CI gets them."""
    if not (SHARED_MIRRORS / "openstack" / "keystone.git").is_dir():
        pytest.skip(f"{SHARED_MIRRORS} is not there")
    served = Served(SHARED_MIRRORS, served_name(SHARED_MIRRORS), True)
    copy = prepare(served, tmp_path / "cache")
    port = free_port()
    with GitServer(tmp_path / "cache", "127.0.0.1", tmp_path / "log", port=port) as server:
        server.start([copy])
        for name in ("devstack", "keystone", "requirements"):
            heads = git("ls-remote", "--heads", f"git://127.0.0.1:{port}/{served.name}/openstack/{name}.git").stdout
            assert "refs/heads/master" in heads and "refs/heads/stable/2025.1" in heads
        git("clone", "-q", "--branch", "master", f"git://127.0.0.1:{port}/{served.name}/openstack/devstack.git",
            str(tmp_path / "devstack"))
    assert (tmp_path / "devstack" / "stack.sh").is_file()
