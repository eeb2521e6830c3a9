"""Fixtures shared by the tests: every test runs in its own HOME, LABCTL_HOME and VAGRANT_HOME."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl.catalog import Catalog, default_catalog
from labctl.cli import main
from labctl.host import HostFacts

REPO = Path(__file__).resolve().parent.parent
# Built boxes and root filesystems are kept between runs here (CI runs on the same machine again);
# delete it to rebuild them.
TEST_CACHE = Path(os.environ.get("LABCTL_TEST_CACHE", "/var/tmp/labctl-test-cache"))
TEST_APT_PORT, TEST_PYPI_PORT = 3159, 3158


@pytest.fixture(scope="session", autouse=True)
def _stop_test_caches() -> Iterator[None]:
    """The host caches that VM tests of this session started (in the test cache) stop with it. Caches
    another session started are left alone: a quick `pytest tests/test_x.py` run beside a VM test
    must not take its caches away."""
    from labctl.cache.services import HostCaches

    caches = HostCaches(TEST_CACHE / "cache")
    before = (caches.pid("apt"), caches.pid("pypi"))
    yield
    if (caches.pid("apt"), caches.pid("pypi")) != before:
        caches.stop()


# The libvirt of every test that boots nothing: a roomy host of libvirt's test driver, so that what
# `plan` says about fitting (its exit code) does not depend on what else runs on the test machine.
ROOMY_NODE = """<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>16</cores><threads>1</threads><mhz>2000</mhz>
</cpu><memory>1073741824</memory></node>"""  # no storage pool: free disk is not known, so not judged


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Keep every test away from the developer's ~/.local/share/labctl, ~/.vagrant.d and ~/.ssh, and
    (but for VM tests and those that ask for the real libvirt: require_libvirt) from this host's libvirt."""
    if request.node.get_closest_marker("vm") is None and "vm_env" not in request.fixturenames:
        node = tmp_path / "roomy-node.xml"
        node.write_text(ROOMY_NODE)
        monkeypatch.setenv("LABCTL_LIBVIRT_URI", f"test://{node}")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "labctl-home"))
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant-home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)  # the host inventory: ~/.config/labctl/hosts.yaml
    monkeypatch.delenv("LABCTL_HOSTS", raising=False)
    monkeypatch.delenv("LABCTL_DEBUG", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    if not kept_for_a_look(request):
        remove_images(tmp_path / "labctl-home")


CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember how a test's body ended, for its fixtures' teardown (kept_for_a_look)."""
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


def kept_for_a_look(request: pytest.FixtureRequest, lab: str | None = None) -> bool:
    """LABCTL_TEST_KEEP=1: a failed test's labs are left on the host, for a person to look inside.
    The real compute stack takes hours here: its failure after stack.sh would otherwise throw the
    stacked machine away with the evidence. Says how to reach the lab and how to remove it."""
    report = request.node.stash.get(CALL_REPORT, None)
    if not os.environ.get("LABCTL_TEST_KEEP") or report is None or not report.failed:
        return False
    if lab:
        reach = " ".join(f"{k}={os.environ[k]}" for k in ("LABCTL_HOME", "LABCTL_CACHE", "VAGRANT_HOME")
                         if k in os.environ)
        measured(f"LABCTL_TEST_KEEP: lab {lab} kept after the failure; look inside with `{reach} labctl exec "
                 f"MACHINE --lab {lab} -- COMMAND`, remove it with `{reach} labctl destroy -y --lab {lab}`")
    return True


def measured(text: str) -> None:
    """A figure a long test reports (a duration, stack.sh's phases): to the terminal itself, past the
    `run` fixture's capsys, which swallows a test's own prints (`pytest -s` shows them)."""
    print(text, file=sys.__stderr__, flush=True)


def remove_images(home: Path) -> None:
    """The stacked images a test's labs kept (their volumes outlive the labs, by design): CI and the
    next test run on this machine's disk. After the test's own fixtures removed its machines."""
    from labctl.images.store import ImageStore

    store = ImageStore(home / "images")
    if not store.all():
        return
    from labctl.adapters.hypervisor import Hypervisor
    from labctl.errors import LabctlError

    with Hypervisor() as hypervisor:
        for image in store.all():
            try:
                hypervisor.remove_image(Path(image.volume))
            except LabctlError as exc:
                print(f"image {image.digest} left on the host: {exc.message}")
            store.forget(image.digest)


@pytest.fixture
def labctl_home(tmp_path: Path) -> Path:
    return tmp_path / "labctl-home"


@pytest.fixture
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture
def host() -> HostFacts:
    """A host with 8 CPUs and no usable KVM (like this project's machines)."""
    return HostFacts(cpus=8, memory_mb=24 * 1024, cpu_flags=frozenset({"sse2"}), kvm_usable=False)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run labctl in-process as a user would type it: run("plan", "--json")."""

    def _run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


def require_tool(name: str) -> str:
    """Skip on a developer machine without `name`; fail in CI, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed, but .ci/run should have installed it")
        pytest.skip(f"{name} is not installed (./install.sh installs it)")
    return path


def require_libvirt(uri: str = "qemu:///system") -> None:
    """Skip without a running libvirtd on a developer machine; fail in CI, where .ci/run starts it.
    The test then talks to that libvirt, not to the roomy test driver isolated_home gives the others
    (its environment is put back at the test's end)."""
    from labctl.adapters import hypervisor

    if "roomy-node.xml" in os.environ.get("LABCTL_LIBVIRT_URI", ""):
        del os.environ["LABCTL_LIBVIRT_URI"]
    from labctl.errors import LabctlError

    try:
        hypervisor.connect(uri).close()
    except LabctlError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"libvirtd is not reachable at {uri} in CI: {exc.message}")
        pytest.skip(f"libvirtd is not reachable at {uri} ({exc.hint})")


def libvirt_names(uri: str = "qemu:///system") -> dict[str, set[str]]:
    """Every domain, network and volume name on the host: to check that a command left nothing."""
    from labctl.adapters import hypervisor

    conn = hypervisor.connect(uri)
    try:
        volumes = {v.name() for p in conn.listAllStoragePools() if p.isActive() for v in p.listAllVolumes()}
        return {"domains": {d.name() for d in conn.listAllDomains()},
                "networks": {n.name() for n in conn.listAllNetworks()}, "volumes": volumes}
    finally:
        conn.close()


def leave_nothing(lab: str, machines: list[str], request: pytest.FixtureRequest | None = None) -> None:
    """Whatever a VM test did, remove its lab's domains, volumes and network, and stop its trainees'
    forwarder (a class test that failed before `destroy` leaves it running): CI runs on this machine next.
    Given the test's `request`, a failed test's lab is kept under LABCTL_TEST_KEEP=1 (kept_for_a_look)."""
    if request is not None and kept_for_a_look(request, lab):
        return
    from labctl.adapters.hypervisor import Hypervisor
    from labctl.classroom.access import close_access
    from labctl.state import LabHome, labctl_home

    lab_dir = LabHome(labctl_home()).lab(lab)
    if lab_dir.path.is_dir():
        close_access(lab_dir)
    with Hypervisor() as hypervisor:
        hypervisor.remove_leftovers([f"labctl-{lab}-{m}" for m in machines], f"labctl-{lab}")


@pytest.fixture
def vm_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Real VMs: vagrant, mmdebstrap and libvirtd there; boxes and Vagrant's state in the test cache."""
    require_tool("vagrant")
    require_tool("mmdebstrap")
    require_libvirt()
    monkeypatch.setenv("LABCTL_CACHE", str(TEST_CACHE / "cache"))
    # The tests' own host caches (labctl.cache), beside any the user runs on the usual ports.
    monkeypatch.setenv("LABCTL_APT_CACHE_PORT", str(TEST_APT_PORT))
    monkeypatch.setenv("LABCTL_PYPI_CACHE_PORT", str(TEST_PYPI_PORT))
    monkeypatch.setenv("VAGRANT_HOME", str(TEST_CACHE / "vagrant.d"))
    return TEST_CACHE
