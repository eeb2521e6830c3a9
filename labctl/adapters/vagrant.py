"""The Vagrant adapter (labctl.protocols.VagrantPort), through python-vagrant: the only importer of it.

python-vagrant sends vagrant's stderr to /dev/null by default and raises a bare CalledProcessError;
here every command's output goes to the lab's vagrant.log and every failure raises VagrantFailed
carrying vagrant's own last words.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import vagrant

from labctl import supervisor
from labctl.proc import CommandFailed, run
from labctl.protocols import VagrantMissing
from labctl.state import VAGRANT_UP_PID

INSTALL_HINT = "./install.sh installs it (apt-get install vagrant vagrant-libvirt)"
PLUGIN_HINT = "sudo apt-get install vagrant-libvirt (or: vagrant plugin install vagrant-libvirt)"
# "==> ctl: Creating domain with the following settings..." -> ("ctl", "Creating domain ...")
_PROGRESS_RE = re.compile(r"^==> ([a-z][a-z0-9-]*): (.*)$")


class VagrantFailed(CommandFailed):
    """A vagrant command failed; the message ends with vagrant's own last line."""


def parse_progress(line: str) -> tuple[str, str] | None:
    """A machine's step from a line of `vagrant up` output, or None for other lines."""
    match = _PROGRESS_RE.match(line.rstrip())
    return (match[1], match[2].strip()) if match else None


def up_pid_file(root: Path) -> Path:
    """Where a running `vagrant up` of the lab in `root` is recorded, for a labctl killed meanwhile:
    the next command finds it (lifecycle: never a second one beside it; destroy stops it)."""
    return root / VAGRANT_UP_PID


def box_volume_name(box: str, version: str) -> str:
    """vagrant-libvirt's name for a box's disk in the storage pool, as its handle_box_image.rb makes it
    (0.11: `<name, / as -VAGRANTSLASH->_vagrant_box_image_<version>_box.img` for a box of one disk)."""
    return f"{box.replace('/', '-VAGRANTSLASH-')}_vagrant_box_image_{version}_box.img"


def version_order(version: str) -> tuple[tuple[int, int | str], ...]:
    """A box version as Vagrant orders them (numbers as numbers): the newest is the largest."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in version.split("."))


def vagrant_env(libvirt_uri: str) -> dict[str, str]:
    return {
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "LIBVIRT_DEFAULT_URI": libvirt_uri,
        # No calls home from a lab host (and none can succeed on an offline one).
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }


@dataclass
class VagrantDriver:
    root: Path
    log: Path
    libvirt_uri: str

    def __post_init__(self) -> None:
        self.executable = shutil.which("vagrant")
        if self.executable is None:
            raise VagrantMissing("vagrant is not installed", hint=INSTALL_HINT)
        self.env = {**os.environ, **vagrant_env(self.libvirt_uri)}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._vagrant = vagrant.Vagrant(root=str(self.root), env=self.env,
                                        out_cm=self._log_cm, err_cm=self._log_cm)

    @contextlib.contextmanager
    def _log_cm(self) -> Iterator[IO[str]]:
        with self.log.open("a", encoding="utf-8") as handle:
            yield handle

    def _failed(self, what: str, exc: subprocess.CalledProcessError, hint: str | None = None) -> VagrantFailed:
        tail = self.log.read_text(encoding="utf-8", errors="replace")[-8000:] if self.log.exists() else ""
        # vagrant's error is the last non-empty paragraph of its output.
        return VagrantFailed(["vagrant", what], exc.returncode, tail, what=f"vagrant {what}",
                             hint=hint or f"vagrant's full output is in {self.log}")

    def _call(self, what: str, func: Callable[[], object]) -> None:
        try:
            func()
        except subprocess.CalledProcessError as exc:
            raise self._failed(what, exc) from None

    @property
    def pid_file(self) -> Path:
        return up_pid_file(self.root)

    def check_plugin(self) -> None:
        """vagrant-libvirt must be installed (its loading is checked by validate)."""
        try:
            plugins = self._vagrant.plugin_list()
        except subprocess.CalledProcessError as exc:
            raise self._failed("plugin list", exc) from None
        if not any(p.name == "vagrant-libvirt" for p in plugins):
            raise VagrantMissing("the vagrant-libvirt plugin is not installed", hint=PLUGIN_HINT)

    def validate(self, directory: Path) -> None:
        """`vagrant validate` of the Vagrantfile in `directory`; says plainly when vagrant-libvirt
        cannot be loaded."""
        try:
            run([self.executable or "vagrant", "validate"], cwd=directory, env=vagrant_env(self.libvirt_uri),
                log=self.log, what="vagrant validate")
        except CommandFailed as exc:
            if re.search(r"no usable default provider|provider .libvirt. could not be found", exc.tail, re.I):
                raise VagrantMissing("Vagrant cannot load its libvirt provider (the vagrant-libvirt plugin)",
                                     hint=PLUGIN_HINT) from None
            raise VagrantFailed(exc.argv, exc.code, exc.tail, what="vagrant validate",
                                hint=f"vagrant's full output is in {self.log}") from None

    def up(self, machines: list[str], on_progress: Callable[[str, str], None]) -> None:
        """Bring machines up (vagrant-libvirt creates them in parallel), reporting each step.

        Run here rather than through python-vagrant's streaming up(), which takes a single machine
        and, when interrupted, waits for vagrant to finish: on Ctrl-C or SIGTERM vagrant is asked to
        stop (it cleans up what it was creating) and is killed if it does not within 30 s."""
        argv = self._argv("up", *machines, "--no-provision", "--provider=libvirt")
        with self._log_cm() as log:
            proc = subprocess.Popen(argv, cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            # If labctl is killed outright (SIGKILL), vagrant goes on in its own session: the next
            # command finds it through this file.
            supervisor.record(up_pid_file(self.root), proc.pid)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    step = parse_progress(line)
                    if step:
                        on_progress(*step)
                code = proc.wait()
            except BaseException:
                # Asked as Ctrl-C would (vagrant then cleans up what it was creating), killed after 30 s.
                supervisor.stop(proc.pid, 30, signal.SIGINT)
                raise
            finally:
                self.pid_file.unlink(missing_ok=True)
        if code != 0:
            raise self._failed("up", subprocess.CalledProcessError(code, argv))

    def destroy(self) -> None:
        self._call("destroy", lambda: self._vagrant.destroy())

    def box_names(self) -> set[str]:
        try:
            return {box.name for box in self._vagrant.box_list() if box.provider in (None, "libvirt")}
        except subprocess.CalledProcessError as exc:
            raise self._failed("box list", exc) from None

    def box_list(self) -> list[tuple[str, str, str]]:
        try:
            return [(b.name, b.provider or "", b.version or "") for b in self._vagrant.box_list()]
        except subprocess.CalledProcessError as exc:
            raise self._failed("box list", exc) from None

    def box_volume(self, box: str) -> str | None:
        """The volume vagrant-libvirt makes (or made) in the pool of box `box` for the machines it boots
        from it: of the newest libvirt version Vagrant has; None when it has none."""
        versions = [v for name, provider, v in self.box_list() if name == box and provider in ("", "libvirt") and v]
        return box_volume_name(box, max(versions, key=version_order)) if versions else None

    def box_add(self, name: str, url: str, force: bool = False) -> None:
        """Add a box from the registry (url = its name), a .box file, or a metadata .json file."""
        # python-vagrant's box_add passes --name, which vagrant refuses for metadata files.
        args = ["box", "add", url, "--provider", "libvirt"]
        if not url.endswith(".json") and url != name:
            args += ["--name", name]
        if force:
            args.append("--force")
        self._call("box add", lambda: self._check_call(args))

    def _argv(self, *args: str) -> list[str]:
        return [self.executable or "vagrant", *args]

    def _check_call(self, args: list[str]) -> None:
        """A vagrant command python-vagrant has no method for, its output in the lab's vagrant.log."""
        with self._log_cm() as log:
            subprocess.check_call(self._argv(*args), cwd=self.root, env=self.env, stdout=log,
                                  stderr=subprocess.STDOUT)
