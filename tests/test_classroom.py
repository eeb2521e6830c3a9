"""The classroom without VMs: seats in lab.yaml, each seat's secrets, the sheet's renderers, the
trainees' port forwarder (real sockets), snapshots on libvirt's test driver, the Ansible inventory."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from conftest import Result
from labctl.catalog import Catalog
from labctl.classroom.seats import ClassFit
from labctl.classroom.sheet import Sheet, card, render_csv, render_html, render_markdown
from labctl.errors import LabctlError, LabFileError
from labctl.labfile import lab_from_dict
from labctl.names import domain_name
from labctl.passwords import SeatSecrets, readable_password
from labctl.state import LabDir, LabHome

ROOT = Path(__file__).resolve().parent.parent


def classroom_lab(**classroom: Any) -> dict[str, Any]:
    return {"name": "class", "defaults": {"memory": "1G", "cpus": 1, "disk": "10G"},
            "network": {"cidr": "192.168.77.0/24"}, "classroom": {"seats": 3, **classroom}}


def error_of(catalog: Catalog, raw: Any) -> str:
    with pytest.raises(LabFileError) as err:
        lab_from_dict(raw, catalog)
    return err.value.message


# ---------------------------------------------------------------------------------------------
# lab.yaml


def test_seats_are_named_for_the_trainer_and_numbered_in_order(catalog: Catalog) -> None:
    lab = lab_from_dict(classroom_lab(trainees=["Ada Lovelace", "  Grace   Hopper "], spares=1), catalog)
    assert lab.classroom is not None
    assert [(s.name, s.trainee, s.spare) for s in lab.classroom.seats] == [
        ("seat-01", "Ada Lovelace", False), ("seat-02", "Grace Hopper", False), ("seat-03", None, False),
        ("seat-04", None, True)]
    assert [(m.name, m.role, m.ip, m.memory_mb) for m in lab.machines] == [
        (f"seat-0{n}", "allinone", f"192.168.77.{9 + n}", 1024) for n in range(1, 5)]
    assert lab.classroom.ports(lab.classroom.seats[6 - 4]) == (2203, 8003)


def test_more_trainees_than_seats_gives_each_a_seat(catalog: Catalog) -> None:
    lab = lab_from_dict(classroom_lab(seats=1, trainees=["a", "b"]), catalog)
    assert [m.name for m in lab.machines] == ["seat-01", "seat-02"]


def test_the_seat_machine_takes_its_own_settings(catalog: Catalog) -> None:
    lab = lab_from_dict(classroom_lab(seat={"memory": "2G", "distro": "debian:12"}), catalog)
    assert {m.memory_mb for m in lab.machines} == {2048}


@pytest.mark.parametrize(("classroom", "expected"), [
    ({"seats": 0}, "classroom.seats: expected a whole number from 1 to 99"),
    ({"seats": 100}, "classroom.seats: expected a whole number from 1 to 99"),
    ({"seats": 60, "spares": 40}, "a classroom has at most 99"),
    ({"seats": None}, "classroom.seats"),
    ({"seats": True}, "classroom.seats"),
    ({"seats": 2, "trainees": "Ada"}, "classroom.trainees: expected a list"),
    ({"seats": 2, "trainees": ["Ada\x1b[2J"]}, "one line of printable text"),
    ({"seats": 2, "trainees": ["Ada\u202eevil"]}, "one line of printable text"),
    ({"seats": 2, "trainees": ["x" * 61]}, "at most 60"),
    ({"seats": 2, "trainees": [["nested"]]}, "expected a trainee's name"),
    ({"seats": 2, "trainees": [""]}, "expected a trainee's name"),
    ({"seats": 2, "address": "host; rm -rf /"}, "classroom.address"),
    ({"seats": 2, "address": "-oProxyCommand=x"}, "classroom.address"),
    ({"seats": 2, "listen": "everywhere"}, "classroom.listen"),
    ({"seats": 2, "ssh_port": 22}, "classroom.ssh_port"),
    ({"seats": 2, "ssh_port": 65535}, "classroom.ssh_port"),
    ({"seats": 3, "ssh_port": 8001, "web_port": 8000}, "overlap"),
    ({"seats": 2, "seat": {"role": "controller"}}, "classroom.seat.role: unknown key"),
    ({"seats": 2, "seat": {"memory": "lots"}}, "classroom.seat.memory"),
    ({"seats": 2, "seat": ["a"]}, "classroom.seat: expected a mapping"),
    ({"teachers": 2}, "classroom.teachers: unknown key"),
    ({}, "say how many seats"),
    ("twelve", "classroom: expected a mapping"),
])
def test_bad_classrooms_are_one_clear_line(catalog: Catalog, classroom: Any, expected: str) -> None:
    raw = {"name": "class", "classroom": classroom}
    assert expected in error_of(catalog, raw)


def test_a_classroom_has_no_machines_list(catalog: Catalog) -> None:
    raw = {**classroom_lab(), "machines": [{"name": "m"}]}
    assert "classroom.seat" in error_of(catalog, raw)


def test_a_small_network_says_it_has_no_room_for_the_class(catalog: Catalog) -> None:
    raw = {**classroom_lab(seats=20), "network": {"cidr": "192.168.77.0/28"}}
    assert "no free address left for 'seat-" in error_of(catalog, raw)


def test_readable_passwords_avoid_look_alikes() -> None:
    words = {readable_password() for _ in range(200)}
    assert len(words) == 200
    assert not any(set(w) & set("0o1lI") for w in words)
    assert all(len(w) == 12 and w.isalnum() for w in words)


def test_class_arithmetic_says_how_many_seats_fit() -> None:
    fit = ClassFit(seats=12, seat_memory_mb=8192, seat_disk_gb=20, memory_available_mb=60000, disk_free_gb=500)
    assert (fit.fits, fit.fitting) == (False, 7)
    assert fit.lines() == ["memory: 12 seats x 8192 MiB = 98304 MiB; this host has 60000 MiB available",
                           "disk: 12 seats x up to 20 GB filled (volumes are thin) = 240 GB; 500 GB free",
                           "the class does not fit: only 7 of the 12 seats to start would"]
    assert ClassFit(3, 1024, 10, 4096, 30).fitting == 3
    assert ClassFit(3, 1024, 10, 4096, 25).fitting == 2  # the disk decides


# ---------------------------------------------------------------------------------------------
# plan: each seat its own secrets, kept across plans


def write_lab(folder: Path, raw: dict[str, Any]) -> Path:
    path = folder / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_each_seat_has_its_own_passwords_kept_across_plans(run: Callable[..., Result], isolated_home: Path,
                                                          labctl_home: Path) -> None:
    write_lab(isolated_home, classroom_lab(trainees=["Ada"]))
    planned = run("plan", "--json")
    assert planned.code == 0, planned.err
    data = json.loads(planned.out)
    assert [s["name"] for s in data["classroom"]["seats"]] == ["seat-01", "seat-02", "seat-03"]
    lab_dir = LabHome(labctl_home).lab("class")
    seats = lab_dir.secrets().seats
    assert set(seats) == {"seat-01", "seat-02", "seat-03"}
    for name in ("admin", "database", "rabbit", "service", "login"):
        assert len({getattr(seats[s], name) for s in seats}) == 3, name  # no two seats share a password
    lab_passwords = lab_dir.secrets().passwords
    for seat, own in seats.items():
        conf = lab_dir.local_conf(seat).read_text()
        assert f"ADMIN_PASSWORD={own.admin}" in conf and f"DATABASE_PASSWORD={own.database}" in conf
        assert lab_passwords.admin not in conf
        assert all(other.admin not in conf for s, other in seats.items() if s != seat)
    assert oct(lab_dir.secrets_file.stat().st_mode & 0o777) == "0o600"

    # Two more seats: the first three keep theirs (their trainees have the sheet already).
    write_lab(isolated_home, classroom_lab(seats=5))
    assert run("plan").code == 0
    again = lab_dir.secrets().seats
    assert {k: again[k] for k in seats} == seats and set(again) == {f"seat-0{n}" for n in range(1, 6)}

    creds = json.loads(run("creds", "--json").out)
    assert creds["machines"]["seat-02"]["password"] == seats["seat-02"].admin
    text = run("creds", "seat-02").out
    assert f"OS_PASSWORD={seats['seat-02'].admin}" in text and "the password of seat-02" in text


def test_damaged_seat_secrets_are_one_line(run: Callable[..., Result], isolated_home: Path,
                                           labctl_home: Path) -> None:
    write_lab(isolated_home, classroom_lab())
    assert run("plan").code == 0
    secrets = LabHome(labctl_home).lab("class").secrets_file
    data = yaml.safe_load(secrets.read_text())
    data["seats"]["seat-01"]["login"] = "a b;c"
    secrets.write_text(yaml.safe_dump(data))
    result = run("plan")
    assert result.code != 0 and "damaged seat passwords" in result.err and "Traceback" not in result.err


# ---------------------------------------------------------------------------------------------
# The sheet's renderers, with hostile names


HOSTILE = '<script>alert(1)</script> =HYPERLINK("http://x") | *bold*'


def a_sheet(n: int = 3, trainee: str = HOSTILE) -> Sheet:
    cards = tuple(card(seat=f"seat-0{i}", number=i, trainee=trainee if i == 1 else f"Trainee {i}", spare=False,
                       address="10.0.0.1", ssh_port=2200 + i, web_port=8000 + i,
                       secrets=SeatSecrets(f"admin{i}", "db", "rb", "sv", f"login{i}"), has_dashboard=i != 3,
                       state="running", devstack="stacked", host="bighost", seat_address=f"192.168.77.{9 + i}")
                  for i in range(1, n + 1))
    return Sheet("class", "10.0.0.1", cards)


def test_html_escapes_names() -> None:
    html = render_html(a_sheet())
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('class="card"') == 3
    assert "ssh -p 2201 stack@10.0.0.1" in html and "http://10.0.0.1:8002/dashboard" in html
    assert "not enabled in this lab" in html  # seat 3 has no dashboard


def test_csv_cells_cannot_become_formulas() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(a_sheet()))))
    assert len(rows) == 3
    assert rows[0]["trainee"].startswith("'<script>") or rows[0]["trainee"].startswith("<script>")
    formula = render_csv(a_sheet(1, trainee='=HYPERLINK("http://x")'))
    assert next(iter(csv.DictReader(io.StringIO(formula))))["trainee"] == "'=HYPERLINK(\"http://x\")"
    assert rows[1]["ssh_command"] == "ssh -p 2202 stack@10.0.0.1" and rows[1]["login_password"] == "login2"


def test_markdown_escapes_its_own_syntax() -> None:
    md = render_markdown(a_sheet())
    assert "<script>" not in md and "\\<script\\>" in md
    table_row = next(line for line in md.splitlines() if line.startswith("| seat-01"))
    assert table_row.count(" | ") == 5  # the name's | is escaped, the table keeps its columns
    assert "`ssh -p 2203 stack@10.0.0.1`" in md


def classroom_dir(tmp_path: Path, ssh_port: int, web_port: int) -> LabDir:
    d = LabDir("class", tmp_path / "class")
    d.create()
    d.write_meta({"name": "class", "machines": [{"name": f"seat-0{n}", "role": "allinone", "ip": f"127.0.0.{n + 1}"}
                                                for n in (1, 2)],
                  "classroom": {"seats": [{"number": 1, "trainee": "Ada"}, {"number": 2, "trainee": None}],
                                "address": None, "listen": "127.0.0.1", "ssh_port": ssh_port,
                                "web_port": web_port}})
    return d


def test_access_opens_once_and_closes_for_good(tmp_path: Path) -> None:
    from labctl.classroom.access import close_access, forwarder_pid, open_access

    base = 30000 + os.getpid() % 20000
    lab_dir = classroom_dir(tmp_path, base, base + 100)
    doors = open_access(lab_dir)
    try:
        assert [(d.seat, d.ssh_port, d.web_port, d.seat_address) for d in doors] == [
            ("seat-01", base + 1, base + 101, "127.0.0.2"), ("seat-02", base + 2, base + 102, "127.0.0.3")]
        pid = forwarder_pid(lab_dir)
        assert pid is not None
        for port in (base + 1, base + 2, base + 101, base + 102):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert open_access(lab_dir) == doors and forwarder_pid(lab_dir) == pid  # kept, not restarted
    finally:
        assert close_access(lab_dir)
    assert forwarder_pid(lab_dir) is None and not close_access(lab_dir)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", base + 1), timeout=2).close()


def test_a_taken_port_is_a_clear_error_and_nothing_runs(tmp_path: Path) -> None:
    from labctl.classroom.access import forwarder_pid, open_access

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        lab_dir = classroom_dir(tmp_path, port - 2, port + 500)  # seat 2's SSH port is taken
        with pytest.raises(LabctlError) as err:
            open_access(lab_dir)
    assert f"cannot listen on 127.0.0.1:{port}" in err.value.message and "ssh_port" in (err.value.hint or "")
    assert forwarder_pid(lab_dir) is None


def test_a_recorded_pid_of_another_process_is_never_signalled(tmp_path: Path) -> None:
    from labctl.classroom.access import close_access, forwarder_pid
    from labctl.supervisor import start_ticks

    lab_dir = classroom_dir(tmp_path, 41000, 42000)
    other = subprocess.Popen(["sleep", "30"])
    try:
        (lab_dir.path / "access.pid").write_text(f"{other.pid} {start_ticks(other.pid)}\n")
        assert forwarder_pid(lab_dir) is None
        assert not close_access(lab_dir)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_access_of_a_lab_without_classroom_says_so(run: Callable[..., Result], isolated_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text("name: plain\nmachines: [{name: m, memory: 1G, disk: 10G}]\n")
    assert run("plan").code == 0
    for argv in (("access", "open"), ("access", "status"), ("sheet",)):
        result = run(*argv)
        assert result.code == 2 and "is not a classroom" in result.err, argv


# ---------------------------------------------------------------------------------------------
# Snapshots on libvirt's test driver


@pytest.fixture
def libvirt_test_driver() -> Iterator[Any]:
    import libvirt

    conn = libvirt.open("test:///default")
    dom = conn.lookupByName("test")
    conn.defineXML(dom.XMLDesc(0).replace("<name>test</name>", "<name>labctl-class-seat-01</name>")
                   .replace(dom.UUIDString(), "6a0d4b7e-1f1e-4c8b-9a6d-2f7f8d2b0c01"))
    conn.lookupByName("labctl-class-seat-01").create()
    from labctl.adapters.hypervisor import Hypervisor

    with Hypervisor("test:///default", conn) as hypervisor:
        yield hypervisor


def test_snapshots_save_list_restore_delete(tmp_path: Path, libvirt_test_driver: Any) -> None:
    from labctl import records, snapshots
    from labctl.adapters.ssh import Ssh
    from labctl.cancel import CancelToken
    from labctl.machine_status import MachineStatus
    from labctl.provision import StackResult
    from labctl.stacking.machines import record

    lab_dir = classroom_dir(tmp_path, 41000, 42000)
    record(lab_dir, [StackResult("seat-01", "ok", 10, "Starting Horizon", dashboard="http://x/dashboard")])
    snapshots.save(lab_dir, libvirt_test_driver, ["seat-01"], "clean", "before the exercise")
    again = snapshots.save(lab_dir, libvirt_test_driver, ["seat-01"], "clean")  # replaced, not doubled
    listed = snapshots.listing(lab_dir, libvirt_test_driver, ["seat-01"])["seat-01"]
    assert [(s.name, s.state) for s in listed] == [("clean", "running")]
    assert again[0][1].name == "clean"

    record(lab_dir, [StackResult("seat-01", "failed", 10, "Starting Keystone")])
    with pytest.raises(LabctlError, match="no snapshot 'gone'"):
        snapshots.restore(lab_dir, libvirt_test_driver, Ssh(CancelToken()), ["seat-01"], "gone", lambda: [],
                          lambda *_: None)
    assert records.read(lab_dir).stack["seat-01"].status == "failed"  # a refused restore changed nothing

    # The test driver's domain has no SSH: the restore says its clock could not be set, and brings
    # back what labctl knew when the snapshot was taken (stacked fine).
    seat = MachineStatus("seat-01", "allinone", "127.0.0.2", "labctl-class-seat-01", "running", ("127.0.0.2",),
                         1024, 1, 5.0, "vagrant")
    lab_dir.private_key("seat-01").parent.mkdir(parents=True)
    lab_dir.private_key("seat-01").write_text("not a key")
    steps: list[tuple[str, str]] = []
    restored = snapshots.restore(lab_dir, libvirt_test_driver, Ssh(CancelToken()), ["seat-01"], "clean", lambda: [seat],
                                 lambda m, text: steps.append((m, text)), ssh_timeout=0.5)
    assert [(r.machine, r.clock_set) for r in restored] == [("seat-01", False)]
    assert "clock is behind" in restored[0].message
    assert steps[:2] == [("seat-01", "restoring clean"), ("seat-01", "setting the clock")]
    back = records.read(lab_dir).stack["seat-01"]
    assert (back.status, back.dashboard) == ("ok", "http://x/dashboard")
    assert libvirt_test_driver.domain("labctl-class-seat-01").state == "running"

    assert snapshots.delete(lab_dir, libvirt_test_driver, ["seat-01"], "clean") == ["seat-01"]
    assert snapshots.listing(lab_dir, libvirt_test_driver, ["seat-01"])["seat-01"] == []
    assert snapshots.delete(lab_dir, libvirt_test_driver, ["seat-01", "seat-02"], "clean") == []


def test_destroy_drops_every_snapshot(tmp_path: Path, libvirt_test_driver: Any) -> None:
    from labctl import snapshots

    lab_dir = classroom_dir(tmp_path, 41000, 42000)
    for name in ("a", "b"):
        snapshots.save(lab_dir, libvirt_test_driver, ["seat-01"], name)
    libvirt_test_driver.take_snapshot(domain_name("class", "seat-01"), snapshots.STACKED,
                                      "taken by labctl after stacking")
    assert snapshots.drop_all(lab_dir, libvirt_test_driver, ["seat-01", "seat-02"]) == 3
    assert snapshots.listing(lab_dir, libvirt_test_driver, ["seat-01"])["seat-01"] == []


def test_the_stacked_snapshot_is_labctls_alone(tmp_path: Path, libvirt_test_driver: Any) -> None:
    """`snapshot save stacked` would silently replace what `reset` returns to (and its record)."""
    from labctl import snapshots

    lab_dir = classroom_dir(tmp_path, 41000, 42000)
    with pytest.raises(LabctlError, match="labctl reset returns to") as err:
        snapshots.save(lab_dir, libvirt_test_driver, ["seat-01"], snapshots.STACKED)
    assert "another name" in (err.value.hint or "")
    assert snapshots.listing(lab_dir, libvirt_test_driver, ["seat-01"])["seat-01"] == []


@pytest.mark.parametrize("name", ["", "../x", "a b", "-rf", "x" * 64, "a;b", "é", "a\nb"])
def test_bad_snapshot_names(name: str) -> None:
    from labctl.snapshots import check_snapshot_name

    with pytest.raises(LabctlError, match="snapshot name"):
        check_snapshot_name(name)


def test_reset_needs_a_machine(run: Callable[..., Result], isolated_home: Path) -> None:
    write_lab(isolated_home, classroom_lab())
    assert run("plan").code == 0
    result = run("reset")
    assert result.code == 2 and "name the machines to reset" in result.err
    unknown = run("snapshot", "list", "seat-09")
    assert unknown.code == 2 and "no machine named 'seat-09' in lab 'class'" in unknown.err


def test_what_acts_on_every_seat_asks_first(run: Callable[..., Result], isolated_home: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a terminal to ask, `reset --all`, and `snapshot restore`/`delete` of every machine, are
    refused unless -y says yes; at a terminal, a no stops them before anything is touched."""
    write_lab(isolated_home, classroom_lab())
    assert run("plan").code == 0
    for argv, retry in ((["reset", "--all"], "labctl reset --all -y --lab class"),
                        (["snapshot", "restore", "stacked"], "labctl snapshot restore -y --lab class stacked"),
                        (["snapshot", "delete", "stacked"], "labctl snapshot delete -y --lab class stacked")):
        refused = run(*argv)
        assert refused.code == 2 and "without confirmation" in refused.err and retry in refused.err, refused.err
    # Named machines: no question (this lab has none running, so the command goes on and says so).
    named = run("snapshot", "delete", "stacked", "seat-01")
    assert "without confirmation" not in named.err
    # -y: no question either, the command itself runs.
    assert "without confirmation" not in run("reset", "--all", "-y").err
    # At a terminal, answering no aborts before anything is done.
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("click.confirm", lambda *_a, **_k: (_ for _ in ()).throw(click.exceptions.Abort()))
    aborted = run("reset", "--all")
    assert aborted.code != 0 and "without confirmation" not in aborted.err


def test_two_classrooms_never_forward_the_same_ports(run: Callable[..., Result], isolated_home: Path) -> None:
    write_lab(isolated_home, classroom_lab())
    assert run("plan").code == 0
    other = isolated_home / "other"
    other.mkdir()
    raw = {**classroom_lab(), "name": "other", "network": {"cidr": "192.168.78.0/24"}}
    write_lab(other, raw)
    clash = run("plan", "-f", str(other / "lab.yaml"))
    assert clash.code == 2 and "would forward port 2201, which classroom 'class' forwards" in clash.err
    assert "ssh_port: " in clash.err
    write_lab(other, {**raw, "classroom": {"seats": 3, "ssh_port": 3200, "web_port": 9000}})
    assert run("plan", "-f", str(other / "lab.yaml")).code == 0


def test_access_status_says_which_port_leads_where(run: Callable[..., Result], isolated_home: Path) -> None:
    # Seats with addresses of their own on the lab network (seats on networks of their own, reached by
    # their management address: tests/test_seat_networks.py).
    write_lab(isolated_home, classroom_lab(address="class.example", ssh_port=3300, web_port=9300, seat_networks=False))
    assert run("plan").code == 0
    data = json.loads(run("access", "status", "--json").out)
    assert data["open"] is False and data["address"] == "class.example"
    assert [(s["seat"], s["ssh_port"], s["web_port"], s["seat_address"]) for s in data["seats"]] == [
        (f"seat-0{n}", 3300 + n, 9300 + n, f"192.168.77.{9 + n}") for n in (1, 2, 3)]
    text = run("access", "status").out
    assert "ports closed" in text and "seat-02: ssh -p 3302 stack@class.example" in text
    assert run("access", "close").out.strip() == "the trainees' ports were not open"
