"""The stand-in DevStack repository the tests create (see tests/standin/stack.sh for why)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).parent / "standin"


def make_repo(dest: Path) -> Path:
    """A git repository with the stand-in scripts committed on branch master."""
    shutil.copytree(SOURCE, dest)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(dest), "PATH": "/usr/bin:/bin"}
    for argv in (["git", "init", "-q", "-b", "master"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "stand-in"]):
        subprocess.run(argv, cwd=dest, check=True, env=env)
    return dest
