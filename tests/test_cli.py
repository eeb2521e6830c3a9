from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click
import pytest

from conftest import REPO, Result
from labctl.cli import cli
from labctl.errors import LabctlError

CLASSROOM = "name: class\ndefaults: {memory: 4G, cpus: 1}\nmachines:\n  - {name: seat, count: 3}\n"


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, subcommands of groups included: ("plan",), ("box", "build"), ..."""
    found: list[tuple[str, ...]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # commands are imported when asked for (labctl.commands.app)
        command = group.get_command(ctx, name)
        assert command is not None
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += commands(command, (*prefix, name))
    return found


def command_at(path: tuple[str, ...]) -> click.Command:
    """The command a path of words names: ("snapshot", "save") -> snapshot's save."""
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None
        command = found
    return command


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_every_command_has_help_and_is_in_the_reference(run: Callable[..., Result], path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.code == 0
    assert f"Usage: labctl {' '.join(path)}" in result.out
    command = command_at(path)
    summary = command.get_short_help_str()
    assert summary and not summary.startswith("Usage")
    reference = (REPO / "docs" / "commands.md").read_text()
    assert re.search(rf"^#+ `labctl {' '.join(path)}\b", reference, re.M), f"docs/commands.md has no section for {path}"


def test_top_level_help_and_version(run: Callable[..., Result]) -> None:
    assert run("--help").code == 0
    result = run("--version")
    assert result.code == 0 and "labctl" in result.out


def test_boxes_table_and_json(run: Callable[..., Result]) -> None:
    table = run("boxes")
    assert table.code == 0 and "debian:12" in table.out and "opensuse" in table.out
    data = json.loads(run("boxes", "--json").out)["releases"]
    fedora = next(r for r in data if r["family"] == "fedora")
    assert fedora["devstack_branches"] == [] and fedora["package_family"] == "dnf"
    assert next(r for r in data if r["distro"] == "debian:12")["default"] is True


def test_plan_json(run: Callable[..., Result], labctl_home: Path) -> None:
    result = run("plan", "--distro", "debian", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["lab"] == "debian-12"
    assert plan["dir"] == str(labctl_home / "labs" / "debian-12")
    assert Path(plan["vagrantfile"]).is_file()
    (machine,) = plan["machines"]
    assert {"name", "distro", "box", "role", "memory_mb", "cpus", "ip", "local_conf"} <= set(machine)
    assert (machine["distro"], machine["box"], machine["role"], machine["memory_mb"]) == (
        "debian:12", "debian/bookworm64", "allinone", 8192)
    conf = Path(machine["local_conf"])
    assert f"HOST_IP={machine['ip']}" in conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert plan["accelerator"]["name"] in ("kvm", "qemu") and plan["accelerator"]["reason"]
    assert "ADMIN_PASSWORD" not in result.out and "password" not in result.out.lower()
    assert plan["image"] == {"kept": True, "up_to_gb": 20}  # a lab of one machine keeps its stacked disk
    said = run("plan", "--distro", "debian")
    assert "Stacked image: devstack's disk is kept once stacked (up to 20 GB on the host)" in " ".join(said.out.split())


def test_plan_table_shows_totals(run: Callable[..., Result], isolated_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text(CLASSROOM)
    result = run("plan")
    assert result.code == 0, result.err
    assert "seat-3" in result.out and "3 machine(s)" in result.out and "12288 MiB" in result.out
    assert "Stacked image" not in result.out and json.loads(run("plan", "--json").out)["image"] is None  # a class


def test_cpus_are_clamped_and_said(run: Callable[..., Result]) -> None:

    result = run("plan", "--distro", "debian", "--cpus", "256", "--json")
    plan = json.loads(result.out)
    assert plan["machines"][0]["cpus"] == (os.cpu_count() or 1)
    assert any("256 CPUs asked" in w for w in plan["warnings"])


def test_a_class_is_told_of_its_lowered_cpus_once(run: Callable[..., Result], isolated_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text("name: big\nclassroom: {seats: 14, seat: {cpus: 64, memory: 1G}}\n")
    result = run("plan", "--json")
    said = [w for w in json.loads(result.out)["warnings"] if "CPUs asked" in w]
    assert said == [f"14 machines (seat-01...): 64 CPUs asked, this host has {os.cpu_count()}: using"
                    f" {os.cpu_count()} (set cpus: in lab.yaml to choose)"]


def test_passwords_made_once_private_and_shared(run: Callable[..., Result], isolated_home: Path,
                                                labctl_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text(CLASSROOM)
    assert run("plan").code == 0
    lab_dir = labctl_home / "labs" / "class"
    secrets = lab_dir / "secrets.yaml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE(lab_dir.stat().st_mode) == 0o700
    first = secrets.read_text()
    assert "secrete" not in first
    admin = re.search(r"admin: (\w+)", first)
    assert admin and len(admin[1]) >= 20
    assert run("plan").code == 0
    assert secrets.read_text() == first
    for n in (1, 2, 3):
        assert f"ADMIN_PASSWORD={admin[1]}" in (lab_dir / "machines" / f"seat-{n}" / "local.conf").read_text()


def test_two_labs_get_different_passwords(run: Callable[..., Result], labctl_home: Path) -> None:
    assert run("plan", "--distro", "debian").code == 0
    assert run("plan", "--distro", "ubuntu").code == 0
    a = (labctl_home / "labs" / "debian-12" / "secrets.yaml").read_text()
    b = (labctl_home / "labs" / "ubuntu-24-04" / "secrets.yaml").read_text()
    assert a != b


def test_unsupported_distro_is_said_plainly(run: Callable[..., Result]) -> None:
    result = run("plan", "--distro", "fedora")
    assert result.code == 0
    assert "does not support fedora:43" in (result.out + result.err).replace("\n", " ")


def test_init_writes_a_lab_that_plans(run: Callable[..., Result], isolated_home: Path) -> None:
    result = run("init", "--name", "demo")
    assert result.code == 0 and (isolated_home / "lab.yaml").is_file()
    again = run("init")
    assert again.code == 2 and "already exists" in again.err
    plan = json.loads(run("plan", "--json").out)
    assert plan["lab"] == "demo" and plan["machines"][0]["role"] == "allinone"


def test_init_names_the_lab_after_its_folder(run: Callable[..., Result], isolated_home: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Two projects' `labctl init` no longer make two labs called mylab."""
    for folder, expected in (("Nova Bugs_2", "nova-bugs-2"), ("42-keystone", "keystone"), ("___", "mylab")):
        where = isolated_home / folder
        where.mkdir()
        monkeypatch.chdir(where)
        assert run("init").code == 0
        assert json.loads(run("plan", "--json").out)["lab"] == expected
    bad = run("init", "--name", "Bad_Name", "other.yaml")
    assert bad.code == 2 and "--name: invalid name 'Bad_Name'" in bad.err and not Path("other.yaml").exists()


def on_test_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_gib: int, cpus: int = 8) -> None:
    """This command's libvirt: the test driver on a node of its own (`plan` asks it whether the lab fits)."""
    node = tmp_path / f"node-{memory_gib}.xml"
    node.write_text(f"<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>"
                    f"<mhz>2000</mhz></cpu><memory>{memory_gib * 1024 * 1024}</memory>"
                    "<pool type='dir'><name>default</name><target><path>/default</path></target></pool></node>")
    monkeypatch.setenv("LABCTL_LIBVIRT_URI", f"test://{node}")


def test_plan_exits_non_zero_when_the_lab_does_not_fit(run: Callable[..., Result], isolated_home: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `up` would refuse it, and as with a host inventory: the plan is shown and written, the exit
    code says it does not fit, for a lab of machines as for a class."""
    on_test_host(tmp_path, monkeypatch, memory_gib=24)
    big = run("plan", "--distro", "debian", "--memory", "64G")
    assert big.code == 2 and "not enough memory: the machines to start need 65536 MiB" in big.err
    assert run("plan", "--distro", "debian", "--memory", "4G").code == 0
    assert run("init", "--classroom", "14", "--name", "class").code == 0
    cls = run("plan", "--json")
    assert cls.code == 2 and "the class does not fit this host: 3 of the 14 seats to start would" in cls.err
    data = json.loads(cls.out)
    assert data["fits"] is False and data["classroom"]["fit"]["fitting"] == 3
    assert "only 3 of the 14 seats to start would" in " ".join(data["classroom"]["fit"]["arithmetic"])


def test_init_classroom_writes_a_class_the_sheet_knows(run: Callable[..., Result], isolated_home: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_test_host(tmp_path, monkeypatch, memory_gib=256)
    assert run("init", "--classroom", "3", "--name", "class").code == 0
    plan = json.loads(run("plan", "--json").out)
    assert [m["name"] for m in plan["machines"]] == ["seat-01", "seat-02", "seat-03"]
    assert plan["classroom"]["seats"] and len(plan["classroom"]["seats"]) == 3
    sheet = run("sheet", "--lab", "class")
    assert sheet.code == 0, sheet.err
    assert "not a classroom" not in sheet.err
    # The example's commented keys are valid once uncommented.
    text = (isolated_home / "lab.yaml").read_text()
    (isolated_home / "lab.yaml").write_text(re.sub(r"^  # (\w+:)", r"  \1", text, flags=re.M))
    result = run("plan", "--json")
    assert result.code == 0, result.err
    seats = json.loads(result.out)["classroom"]["seats"]
    assert [s["trainee"] for s in seats][:2] == ["Ada Lovelace", "Grace Hopper"] and len(seats) == 5
    assert run("init", "--classroom", "0", "x.yaml").code == 2
    default = run("init", "--classroom", "--name", "twelve", "twelve.yaml")
    assert default.code == 0 and "seats: 12 " in (isolated_home / "twelve.yaml").read_text()


def test_init_example_blocks_are_valid_when_uncommented(run: Callable[..., Result], isolated_home: Path) -> None:
    run("init", "--name", "demo")
    text = (isolated_home / "lab.yaml").read_text()
    head, rest = text.split("machines:\n", 1)
    machines, devstack = rest.split("devstack:\n", 1)
    # The commented multinode example replaces the all-in-one machine.
    example = machines.split("# A multinode lab instead (replace the machine above):\n")[1].split("  #\n")[0]
    multinode = re.sub(r"^  # ", "  ", example, flags=re.M)
    # Every commented devstack setting turned on.
    devstack = re.sub(r"^  # ", "  ", devstack, flags=re.M)
    (isolated_home / "lab.yaml").write_text(head + "machines:\n" + multinode + "devstack:\n" + devstack)
    result = run("plan", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert [m["name"] for m in plan["machines"]] == ["controller", "compute-1", "compute-2"]
    assert plan["devstack"]["force"] is True
    conf = Path(plan["machines"][0]["local_conf"]).read_text()
    assert "enable_plugin octavia https://opendev.org/openstack/octavia master" in conf
    assert "[[post-config|$NOVA_CONF]]" in conf


@pytest.mark.parametrize(("lab_yaml", "expected"), [
    ("name: t\nmachines:\n  - name: alpha\n    memory: [8G\n", r"line \d+"),
    ("name: t\nmachines:\n  - name: alpha\n  - name: bravo\n    memory: lots\n", r"machines\[1\]\.memory"),
    ("name: t\nmachines: [{name: alpha}]\ncolour: red\n", r"colour: unknown key"),
    ("name: t\nmachines: [{name: alpha, distro: plan9}]\n", r"unknown distro 'plan9'; known: .*debian:12"),
    ("name: \"it's\"\nmachines: [{name: alpha}]\n", r"invalid name \"it's\""),
    ("name: t\nmachines: [{name: '#{`id`}'}]\n", r"invalid name"),
    ("name: ../../etc\nmachines: [{name: alpha}]\n", r"invalid name"),
    ("name: t\nmachines: [{name: a b}]\n", r"invalid name 'a b'"),
    ("name: t\nmachines: [{name: alpha}]\ndevstack: {localrc: {X: \"1\\n[[post-config|/etc/x]]\"}}\n", "single line"),
    ("", r"a lab needs a name|expected a mapping"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_lab_files_fail_cleanly_and_write_nothing(run: Callable[..., Result], isolated_home: Path,
                                                      labctl_home: Path, lab_yaml: str, expected: str) -> None:
    (isolated_home / "lab.yaml").write_text(lab_yaml)
    result = run("plan", "-f", "lab.yaml")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("labctl: error: ") and re.search(expected, lines[0]), result.err
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("  hint: "))
    assert "Traceback" not in result.err + result.out
    assert not labctl_home.exists()


def test_bad_fragment_writes_nothing(run: Callable[..., Result], isolated_home: Path, labctl_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text("name: t\nmachines: [{name: alpha}]\n")
    (isolated_home / "local.conf.d").mkdir()
    (isolated_home / "local.conf.d" / "all.conf").write_text("FOO=1\n")
    result = run("plan")
    assert result.code == 2 and "all.conf:1" in result.err
    assert not (labctl_home / "labs").exists()  # only the lab's lock was taken, in $LABCTL_HOME/locks


def test_failed_replan_keeps_the_previous_files(run: Callable[..., Result], isolated_home: Path,
                                                labctl_home: Path) -> None:
    lab_file = isolated_home / "lab.yaml"
    lab_file.write_text("name: t\nmachines: [{name: alpha}]\n")
    assert run("plan").code == 0
    before = {p: p.read_bytes() for p in (labctl_home / "labs" / "t").rglob("*") if p.is_file()}
    lab_file.write_text("name: t\nmachines: [{name: alpha, memory: lots}]\n")
    assert run("plan").code == 2
    after = {p: p.read_bytes() for p in (labctl_home / "labs" / "t").rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize(("argv", "expected"), [
    (["--distro", "plan9"], "unknown distro"),
    (["--distro", "debian", "--memory", "lots"], "--memory: expected MiB"),
    (["--distro", "debian", "--name", "Bad Name"], "--name: invalid name"),
    (["--distro", "debian", "-f", "lab.yaml"], "cannot be combined"),
    (["-f", "a.yaml", "--lab", "x"], "give one"),
    (["--memory", "4G"], "go with --distro"),
    (["-f", "missing.yaml"], "no such lab file"),
    (["--lab", "nosuchlab"], "no lab named 'nosuchlab'"),
    (["--lab", "../x"], "invalid lab name"),
])
def test_bad_flags(run: Callable[..., Result], labctl_home: Path, argv: list[str], expected: str) -> None:
    result = run("plan", *argv)
    assert result.code == 2 and expected in result.err, result.err
    assert "hint:" in result.err and "Traceback" not in result.err
    assert not (labctl_home / "labs").exists()


def test_choosing_the_lab(run: Callable[..., Result], isolated_home: Path) -> None:
    none = run("plan")
    assert none.code == 2 and "no lab here" in none.err and "labctl init" in none.err
    assert run("plan", "--distro", "debian").code == 0
    only = json.loads(run("plan", "--json").out)  # the only lab there is
    assert only["lab"] == "debian-12"
    assert run("plan", "--distro", "ubuntu").code == 0
    several = run("plan")
    assert several.code == 2 and "debian-12, ubuntu-24-04" in several.err
    assert json.loads(run("plan", "--lab", "ubuntu-24-04", "--json").out)["lab"] == "ubuntu-24-04"
    (isolated_home / "lab.yaml").write_text("name: here\nmachines: [{name: alpha}]\n")
    assert json.loads(run("plan", "--json").out)["lab"] == "here"  # ./lab.yaml comes first
    other = isolated_home / "sub"
    other.mkdir()
    (other / "lab.yaml").write_text("name: here\nmachines: [{name: bravo}]\n")
    clash = run("plan", "-f", str(other / "lab.yaml"))
    assert clash.code == 2 and "already exists, defined by" in clash.err
    assert json.loads(run("plan", "--lab", "here", "--json").out)["machines"][0]["name"] == "alpha"


def test_lab_whose_file_vanished(run: Callable[..., Result], isolated_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text("name: gone\nmachines: [{name: alpha}]\n")
    assert run("plan").code == 0
    (isolated_home / "lab.yaml").unlink()
    result = run("plan", "--lab", "gone")
    assert result.code == 2 and "no longer exists" in result.err


def test_unexpected_errors_are_not_dressed_as_user_errors(run: Callable[..., Result], labctl_home: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulating a bug needs a patch: no input makes correct code crash.
    import labctl.lab

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(labctl.lab, "plan_lab", boom)
    result = run("plan", "--distro", "debian")
    assert result.code == 1 and "internal error" in result.err and "--debug" in result.err
    assert "simulated bug" in (labctl_home / "crash.log").read_text()
    with pytest.raises(RuntimeError):
        run("--debug", "plan", "--distro", "debian")


def test_click_usage_errors_exit_2(run: Callable[..., Result]) -> None:
    result = run("plan", "--no-such-flag")
    assert result.code == 2 and "No such option" in result.err
    assert isinstance(cli, click.Group)


def test_libvirt_failing_mid_command_is_explained(run: Callable[..., Result], isolated_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirtd gone after labctl connected: a real libvirt error (a closed connection), one line + hint."""
    import libvirt

    from labctl.adapters.hypervisor import connection

    assert run("plan", "--distro", "debian").code == 0

    def closed(uri: str | None = None) -> object:
        # Stopping the machine's libvirtd would disturb everything else here: a connection closed
        # under labctl's feet raises the same kind of error from libvirt itself.
        conn = libvirt.open("test:///default")
        conn.close()
        return conn

    monkeypatch.setattr(connection, "connect", closed)
    result = run("status")
    assert result.code == 1 and "libvirt failed during the command" in result.err
    assert "hint: is libvirtd still running?" in result.err and "internal error" not in result.err


def test_a_libvirt_error_that_escaped_its_adapter_is_explained(run: Callable[..., Result], isolated_home: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt's own error raised outside the adapter's methods (a worker thread's connection): the
    Context turns it into labctl's one line and hint, and the command line never names libvirt."""
    import libvirt

    from labctl import machine_status

    assert run("plan", "--distro", "debian").code == 0

    def gone(*_args: object, **_kwargs: object) -> list[object]:
        raise libvirt.libvirtError("Cannot write data: Broken pipe")

    monkeypatch.setattr(machine_status, "lab_status", gone)
    result = run("status")
    assert result.code == 1 and "labctl: error: libvirt failed during the command: Cannot write data" in result.err
    assert "hint: is libvirtd still running?" in result.err and "Traceback" not in result.err


def test_two_labs_that_would_share_a_vm_are_refused(run: Callable[..., Result], tmp_path: Path,
                                                   labctl_home: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "lab.yaml").write_text("name: web\nmachines:\n  - {name: db-x1}\n")
    (tmp_path / "b" / "lab.yaml").write_text("name: web-db\nmachines:\n  - {name: x1}\n")
    assert run("plan", "-f", str(tmp_path / "a" / "lab.yaml")).code == 0
    second = run("plan", "-f", str(tmp_path / "b" / "lab.yaml"))
    assert second.code == 2 and "labctl-web-db-x1, which lab 'web' (machine 'db-x1') has already" in second.err
    assert not (labctl_home / "labs" / "web-db").exists()


def test_two_labs_on_one_network_are_refused_with_a_free_one_named(run: Callable[..., Result], tmp_path: Path,
                                                                    labctl_home: Path) -> None:
    for name, cidr in (("one", "192.168.150.0/24"), ("two", "192.168.150.0/25")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "lab.yaml").write_text(f"name: {name}\nnetwork: {{cidr: {cidr}}}\nmachines:\n"
                                                  "  - {name: ks}\n")
    assert run("plan", "-f", str(tmp_path / "one" / "lab.yaml")).code == 0
    second = run("plan", "-f", str(tmp_path / "two" / "lab.yaml"))
    assert second.code == 2 and "which lab 'one' uses (192.168.150.0/24)" in second.err
    assert "e.g. 192.168.151.0/24" in second.err and not (labctl_home / "labs" / "two").exists()
    assert run("plan", "-f", str(tmp_path / "one" / "lab.yaml")).code == 0  # a lab against itself: fine


def test_hints_name_only_what_exists_for_the_command(run: Callable[..., Result], isolated_home: Path) -> None:
    """`status` takes no --distro; a user with no lab.yaml has no devstack.force to set; a flag's error
    names the flag, not the lab.yaml path it stands for (issue 24 item 6)."""
    none = run("status")
    assert none.code == 2 and "labctl up --distro debian" in none.err and "use --distro" not in none.err
    fedora = run("plan", "--distro", "fedora")
    assert "write a lab.yaml (labctl init) with devstack.force: true" in (fedora.out + fedora.err).replace("\n", " ")
    zero = run("plan", "--distro", "debian", "--cpus", "0")
    assert zero.code == 2 and "--cpus: expected a whole number" in zero.err and "machines[0]" not in zero.err
    (isolated_home / "lab.yaml").write_text("name: t\nmachines: [{name: box, distro: fedora}]\n")
    again = run("plan")
    assert "set devstack.force: true in lab.yaml" in (again.out + again.err).replace("\n", " ")


def test_a_moved_lab_file_is_followed_and_a_lab_without_machines_forgotten(
        run: Callable[..., Result], isolated_home: Path, labctl_home: Path) -> None:
    """Rename lab.yaml and plan it: the lab follows its file instead of refusing (issue 24 item 4);
    `labctl forget` removes a lab that has no machines, and never one that has."""
    (isolated_home / "lab.yaml").write_text("name: moving\nmachines: [{name: box}]\n")
    assert run("plan").code == 0
    (isolated_home / "lab.yaml").rename(isolated_home / "renamed.yaml")
    moved = run("plan", "-f", "renamed.yaml")
    assert moved.code == 0, moved.err
    assert "no longer exists" in (moved.out + moved.err) and "renamed.yaml defines it" in (moved.out + moved.err)
    assert run("status", "--lab", "moving").code == 0  # found through its new file
    # Another file claiming the name while the first still exists: refused, as before.
    (isolated_home / "other.yaml").write_text("name: moving\nmachines: [{name: box}]\n")
    clash = run("plan", "-f", "other.yaml")
    assert clash.code == 2 and "already exists, defined by" in clash.err and "labctl forget" in clash.err

    for hostile in ("../moving", "Moving", "-rf", "nope"):
        assert run("forget", hostile).code == 2
    assert (labctl_home / "labs" / "moving").is_dir()
    forgot = run("forget", "moving")
    assert forgot.code == 0 and "forgot lab moving" in forgot.out
    assert not (labctl_home / "labs" / "moving").exists()
    assert run("plan", "-f", "other.yaml").code == 0  # the name is free again


def test_forget_refuses_a_lab_with_machines(run: Callable[..., Result], isolated_home: Path, labctl_home: Path) -> None:
    """The use-case with a hypervisor that has the lab's machine (libvirt's test driver keeps its
    domains per connection, so the command's own connection could not see one made here)."""
    from fakes import FakeHost

    from labctl.lifecycle import forget_lab
    from labctl.state import LabHome

    (isolated_home / "lab.yaml").write_text("name: busy\nmachines: [{name: box}]\n")
    assert run("plan").code == 0
    lab_dir = LabHome(labctl_home).lab("busy")
    with pytest.raises(LabctlError, match=r"has machines \(labctl-busy-box\)") as refused:
        forget_lab(lab_dir, FakeHost(domains={"labctl-busy-box": "shutoff"}))  # type: ignore[arg-type]
    assert "labctl destroy --lab busy" in (refused.value.hint or "")
    assert lab_dir.path.is_dir()
    # A machine placed on another host: this host's libvirt cannot tell, so forget refuses.
    from labctl import records

    record = records.read_lab(lab_dir)
    records.write_lab(lab_dir, replace(record, machines=tuple(replace(m, host="far") for m in record.machines)))
    with pytest.raises(LabctlError, match="placed on far"):
        forget_lab(lab_dir, FakeHost())  # type: ignore[arg-type]
    records.write_lab(lab_dir, record)
    forget_lab(lab_dir, FakeHost())  # type: ignore[arg-type]
    assert not lab_dir.path.exists()


def test_a_newcomer_meets_a_labctl_command_early_in_the_readme() -> None:
    """What it is, install, then the first lab: the first command to type within the first 40 lines
    (the test suite's section comes later, for contributors)."""
    lines = (REPO / "README.md").read_text().splitlines()
    first = next(n for n, line in enumerate(lines, 1) if re.match(r"labctl (up|init|plan)\b", line))
    assert first <= 40, f"the first labctl command is at line {first}"
    assert lines.index("## Test") > lines.index("## A classroom")
    # Read in five minutes: the rest is in docs/, and every page the README sends to exists.
    assert len(lines) < 200
    for target in re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines)):
        assert (REPO / target).is_file(), target


def test_warnings_go_to_stderr_and_the_plan_to_stdout(run: Callable[..., Result], isolated_home: Path) -> None:
    """`labctl plan > plan.txt` keeps the plan; the warnings reach the person (issue 24 item 9)."""
    shown = run("plan", "--distro", "fedora")
    assert shown.code == 0
    assert "warning: DevStack master does not support fedora:43" in shown.err.replace("\n", " ")
    assert "warning:" not in shown.out and "Lab fedora-43" in shown.out


def test_click_errors_are_said_like_labctl_errors(run: Callable[..., Result]) -> None:
    typo = run("stauts")
    assert typo.code == 2 and typo.out == ""
    assert typo.err.splitlines() == ["labctl: error: No such command 'stauts'; did you mean status?",
                                     "  hint: labctl --help says what it takes"]
    option = run("up", "--foo")
    assert option.code == 2 and "Usage:" not in option.err and "\nError:" not in option.err
    assert option.err.startswith("labctl: error: No such option '--foo'") and "hint: labctl up --help" in option.err
    value = run("init", "--classroom", "abc")
    assert value.code == 2 and value.err.startswith("labctl: error: Invalid value for '--classroom'")


@pytest.mark.parametrize("group", [(), ("snapshot",), ("cache",), ("access",), ("box",)], ids=" ".join)
def test_help_lists_each_command_s_first_sentence_whole(run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
                                                        group: tuple[str, ...]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = run(*group, "--help")
    listing = result.out.split("Commands:\n", 1)[1]
    assert max(len(line) for line in listing.splitlines()) <= 80
    flat = " ".join(listing.split())
    command = command_at(group)
    assert isinstance(command, click.Group)
    for name in command.list_commands(click.Context(command)):
        sub = command.get_command(click.Context(command), name)
        assert sub is not None
        summary = sub.get_short_help_str(limit=300)
        assert not summary.endswith("...") and " ".join(summary.split()) in flat, name


def test_tab_completes_commands_labs_and_the_labs_machines(run: Callable[..., Result], isolated_home: Path,
                                                           tmp_path: Path) -> None:
    """The script of `labctl completion bash`, sourced by a real bash, asked as Tab asks it."""
    (isolated_home / "lab.yaml").write_text("name: cls\nclassroom: {seats: 3, seat: {memory: 1G, cpus: 1}}\n")
    assert run("plan").code == 0
    script = run("completion", "bash")
    assert script.code == 0 and "complete -o nosort -F _labctl_completion labctl" in script.out
    (tmp_path / "completion.sh").write_text(script.out)
    asked = ["labctl ss", "labctl ssh ", "labctl reset seat-01 ", "labctl status --lab ", "labctl snapshot res"]
    probe = "\n".join(f'w="{words}"; COMP_WORDS=($w); [ "${{w: -1}}" = " " ] && COMP_WORDS+=(""); '
                      'COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); _labctl_completion labctl; '
                      'echo "${COMPREPLY[*]}"' for words in asked)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", f"source {tmp_path / 'completion.sh'}\n{probe}"], cwd=isolated_home, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["ssh ssh-config", "seat-01 seat-02 seat-03", "seat-02 seat-03", "cls", "restore"]


CHANGING = [("halt",), ("resume",), ("destroy",), ("reset",), ("snapshot", "save"), ("snapshot", "restore"),
            ("snapshot", "delete"), ("access", "open"), ("access", "close"), ("cache", "start"), ("cache", "stop"),
            ("up",), ("stack",), ("cloud",)]


@pytest.mark.parametrize("path", CHANGING, ids=" ".join)
def test_every_command_that_changes_something_has_json(path: tuple[str, ...]) -> None:
    command = command_at(path)
    assert any("--json" in p.opts for p in command.params), path


def test_every_json_is_one_object_whose_first_key_is_the_format(run: Callable[..., Result],
                                                               isolated_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text("name: cls\nclassroom: {seats: 2, seat: {memory: 1G, cpus: 1}}\n")
    asked = [("plan",), ("status",), ("list",), ("boxes",), ("creds",), ("hosts",), ("cache",), ("access", "status"),
             ("snapshot", "list"), ("halt",), ("snapshot", "delete", "x", "-y"), ("access", "close"),
             ("destroy", "-y")]
    for words in asked:
        result = run(*words, "--json")
        assert result.code == 0, (words, result.err)
        data = json.loads(result.out)
        assert isinstance(data, dict) and next(iter(data)) == "format" and data["format"] == 1, words
    # What a changing command did comes with the machines as they are now (as status gives them).
    run("plan")
    halted = json.loads(run("halt", "--json").out)
    assert halted["lab"] == "cls" and halted["forced"] == []
    assert [m["name"] for m in halted["machines"]] == ["seat-01", "seat-02"]
    assert json.loads(run("destroy", "-y", "--json").out)["destroyed"] is True
