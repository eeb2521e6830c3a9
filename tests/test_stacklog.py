"""The stack.sh output parser, on captured text: the real DevStack's whole output (../shared/devstack-
logs/, two keystone-only runs of master in a labctl VM) and the stand-in's shape."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from labctl.stacklog import MASK, StackProgress, mask, parse, phase_of, slowest, step_of

REAL_LOGS = REPO.parent / "shared" / "devstack-logs"


def real_log(name: str) -> list[str]:
    path = REAL_LOGS / name
    if not path.is_file():
        pytest.skip(f"{path} is not there (../shared/ beside the repository holds DevStack's real output)")
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_phases_of_a_real_run_that_stacked() -> None:
    lines = real_log("keystone-only-master-debian12-run2-ok.log")
    progress = parse(lines)
    assert progress.phases == ["Installing package prerequisites", "Installing OpenStack project source",
                               "Configuring and starting MySQL", "Starting Keystone"]
    # keystone-only: DevStack serves no dashboard, and says so by not announcing one.
    assert progress.keystone == "http://192.168.183.10/identity/"
    assert progress.dashboard is None
    assert progress.failure_line is None


def test_no_line_of_apt_pip_or_git_becomes_a_phase() -> None:
    lines = real_log("keystone-only-master-debian12-run1-failed.log")
    assert sum(line.startswith("Setting up ") for line in lines) > 500  # apt's own output is there
    progress = parse(lines)
    assert progress.phases == ["Installing package prerequisites", "Installing OpenStack project source"]
    assert progress.phase == "Installing OpenStack project source"
    assert progress.failure_line is not None and "git call failed" in progress.failure_line
    # Every line that announces a phase is a traced echo_summary call, and nothing else is.
    announcing = [line for line in lines if phase_of(line, traced=True)]
    assert all(re.search(r":\s+echo_summary ", line) for line in announcing)


def test_phase_durations_follow_the_stream() -> None:
    lines = real_log("keystone-only-master-debian12-run2-ok.log")
    now = [0.0]
    progress = StackProgress(clock=lambda: now[0])  # the clock counts lines: durations in lines
    for number, line in enumerate(lines):
        now[0] = float(number)
        progress.feed(line)
    progress.finish()
    times = dict(progress.phase_times())
    assert list(times) == ["starting", *progress.phases]
    starts = [i for i, line in enumerate(lines) if phase_of(line, traced=True)]
    # Each phase lasts from its announcing line to the next one's (in lines, by this clock).
    assert times["Installing package prerequisites"] == starts[1] - starts[0]
    assert times["Starting Keystone"] == len(lines) - 1 - starts[-1]
    assert slowest(progress.phase_times(), 1)[0][0] == "Installing OpenStack project source"


def test_while_a_phase_lasts_the_step_says_what_devstack_is_at() -> None:
    lines = real_log("keystone-only-master-debian12-run2-ok.log")
    progress = StackProgress()
    seen: dict[str, set[str]] = {}
    for line in lines:
        progress.feed(line)
        if progress.step:
            seen.setdefault(progress.phase, set()).add(progress.step)
    # The nine silent minutes after "Waiting for keystone to start...": Keystone's accounts.
    assert any(s.startswith("create_keystone_accounts") for s in seen["Starting Keystone"])
    assert "install_keystonemiddleware" in " ".join(seen["Installing OpenStack project source"])
    assert not [s for steps in seen.values() for s in steps if "is_service_enabled" in s or "trueorfalse" in s]


def test_step_of_xtrace_lines() -> None:
    assert step_of("+ stack.sh:main:1124                       :   create_keystone_accounts\n") == \
        "create_keystone_accounts"
    assert step_of("+ stack.sh:main:2500  :   stack_install_service keystone") == "stack_install_service keystone"
    assert step_of("+ stack.sh:main:1272  :   source /opt/stack/devstack/tools/install_prereqs.sh") == \
        "tools/install_prereqs.sh"
    assert step_of("++ lib/keystone:create_keystone_accounts:258 :   oscwrap project show admin") == \
        "lib/keystone:create_keystone_accounts"
    assert step_of("+ stack.sh:main:1246  :   GIT_DEPTH=0") is None
    assert step_of("Setting up libxcb1:amd64 (1.15-1) ...") is None


def test_phases_in_the_stand_ins_shape() -> None:
    # The stand-in (tests/standin/stack.sh): outfilter-like timestamps before the xtrace.
    lines = ["2026-11-24 10:00:00.001 | + stack.sh:main:230  :   echo_summary 'stack.sh log /opt/stack/logs/x'\n",
             "2026-11-24 10:00:05.100 | + stack.sh:main:776  :   echo_summary 'Installing package prerequisites'\n",
             "2026-11-24 10:03:00.000 | Installing collected packages: pbr, six\n",
             "2026-11-24 10:03:00.000 | Setting up libxcb1:amd64 (1.15-1) ...\n",
             '2026-11-24 10:31:00.000 | + stack.sh:main:1310 :   echo_summary "Uploading images"\n',
             "Horizon is now available at http://192.168.150.10/dashboard\n"]
    progress = parse(lines)
    assert progress.phases == ["Installing package prerequisites", "Uploading images"]
    assert progress.dashboard == "http://192.168.150.10/dashboard"


def test_bare_summary_lines_count_only_in_runs_without_xtrace() -> None:
    # Without VERBOSE, stack.sh prints only its summary lines on the terminal.
    assert phase_of("Starting Nova API\n") == "Starting Nova API"
    assert phase_of("stack.sh completed in 1834 seconds.") == "stack.sh completed in 1834 seconds."
    assert phase_of("Setting up libxcb1:amd64 (1.15-1) ...\n") is None
    assert phase_of("Installing collected packages: pbr, six\n") is None
    # Once a traced echo_summary was seen, a bare line is a command's output, whatever it says.
    assert phase_of("Starting Nova API\n", traced=True) is None
    assert phase_of("+ functions-common:echo_summary:403 :   echo -e Starting Keystone") is None


def test_failure_and_tail() -> None:
    lines = [f"line {i}\n" for i in range(40)]
    lines += ["+ stack.sh:main:1301 :   echo_summary 'Starting Neutron'\n",
              "[ERROR] /opt/stack/devstack/lib/neutron:221 neutron did not start\n",
              "stack.sh failed: full log in /opt/stack/logs/stack.sh.log.2026-11-24-100000\n"]
    progress = parse(lines)
    assert progress.phase == "Starting Neutron"
    assert progress.failure_line == "[ERROR] /opt/stack/devstack/lib/neutron:221 neutron did not start"
    assert len(progress.tail) == 30 and progress.tail[-1].startswith("stack.sh failed")


def test_mask_hides_passwords_wherever_they_are() -> None:
    secrets = ["s3cretAdm1n"]
    text = "".join(mask(line, secrets) for line in [
        "+ lib/keystone:bootstrap_keystone:520 :   keystone-manage bootstrap --bootstrap-password s3cretAdm1n\n",
        "The password: s3cretAdm1n\n"])
    assert "s3cretAdm1n" not in text
    assert f"The password: {MASK}\n" in text and f"--bootstrap-password {MASK}" in text
    # Even a password labctl does not know is hidden on DevStack's "The password:" line.
    assert mask("The password: typed-by-hand\n", []) == f"The password: {MASK}\n"
