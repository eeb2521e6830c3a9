"""The stack.sh output parser, on captured text: the real DevStack's shape and the stand-in's."""

from __future__ import annotations

from labctl.stacklog import MASK, mask, parse, phase_of

# The shape of a real DevStack run with LOGFILE and VERBOSE=True (outfilter.py timestamps, xtrace
# with DevStack's PS4), cut down; then the unprefixed closing lines.
CAPTURED = """\
2026-11-24 10:00:00.001 | + ./stack.sh:main:230                  :   echo_summary 'stack.sh log /opt/stack/logs/stack.sh.log.2026-11-24-100000'
2026-11-24 10:00:00.002 | + functions-common:echo_summary:403   :   echo -e stack.sh log /opt/stack/logs/stack.sh.log.2026-11-24-100000
2026-11-24 10:00:05.100 | + ./stack.sh:main:776                  :   echo_summary 'Installing package prerequisites'
2026-11-24 10:03:00.000 | Installing collected packages: pbr, six
2026-11-24 10:03:01.000 | Successfully installed pbr-6.1.0 six-1.16.0
2026-11-24 10:09:00.000 | + ./stack.sh:main:934                  :   echo_summary 'Installing OpenStack project source'
2026-11-24 10:20:00.000 | + ./stack.sh:main:1108                 :   echo_summary 'Starting Keystone'
2026-11-24 10:21:00.000 | + lib/keystone:bootstrap_keystone:520 :   /opt/stack/data/venv/bin/keystone-manage bootstrap --bootstrap-password s3cretAdm1n
2026-11-24 10:30:00.000 | + ./stack.sh:main:1301                 :   echo_summary 'Starting Neutron'
2026-11-24 10:31:00.000 | + ./stack.sh:main:1310                 :   echo_summary "Uploading images"



This is your host IP address: 192.168.150.10
Horizon is now available at http://192.168.150.10/dashboard
Keystone is serving at http://192.168.150.10/identity/
The default users are: admin and demo
The password: s3cretAdm1n
"""


def test_phases_from_a_devstack_run() -> None:
    progress = parse(CAPTURED.splitlines(keepends=True))
    assert progress.phases == ["stack.sh log /opt/stack/logs/stack.sh.log.2026-11-24-100000",
                               "Installing package prerequisites", "Installing OpenStack project source",
                               "Starting Keystone", "Starting Neutron", "Uploading images"]
    assert progress.dashboard == "http://192.168.150.10/dashboard"
    assert progress.keystone == "http://192.168.150.10/identity/"
    assert progress.failure_line is None


def test_pip_output_is_not_a_phase() -> None:
    assert phase_of("2026-11-24 10:03:00.000 | Installing collected packages: pbr, six\n") is None
    assert phase_of("+ functions-common:echo_summary:403 :   echo -e Starting Keystone") is None


def test_bare_summary_lines_count_too() -> None:
    # Without VERBOSE, stack.sh prints only its summary lines on the terminal.
    assert phase_of("Starting Nova API\n") == "Starting Nova API"
    assert phase_of("stack.sh completed in 1834 seconds.") == "stack.sh completed in 1834 seconds."


def test_failure_and_tail() -> None:
    lines = [f"2026-11-24 10:00:{i:02d}.000 | line {i}\n" for i in range(40)]
    lines += ["2026-11-24 10:01:00.000 | + ./stack.sh:main:1301 :   echo_summary 'Starting Neutron'\n",
              "2026-11-24 10:01:01.000 | [ERROR] /opt/stack/devstack/lib/neutron:221 neutron did not start\n",
              "stack.sh failed: full log in /opt/stack/logs/stack.sh.log.2026-11-24-100000\n"]
    progress = parse(lines)
    assert progress.phase == "Starting Neutron"
    assert progress.failure_line == "[ERROR] /opt/stack/devstack/lib/neutron:221 neutron did not start"
    assert len(progress.tail) == 30 and progress.tail[-1].startswith("stack.sh failed")


def test_mask_hides_passwords_wherever_they_are() -> None:
    secrets = ["s3cretAdm1n"]
    masked = [mask(line, secrets) for line in CAPTURED.splitlines(keepends=True)]
    text = "".join(masked)
    assert "s3cretAdm1n" not in text
    assert f"The password: {MASK}\n" in text and f"--bootstrap-password {MASK}" in text
    # Even a password labctl does not know is hidden on DevStack's "The password:" line.
    assert mask("The password: typed-by-hand\n", []) == f"The password: {MASK}\n"
