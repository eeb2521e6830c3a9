"""Values a clumsy user or a hand edit leaves behind (issue 19's smaller defects): each is one line
with a hint, and destroys nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Result


def test_an_empty_lab_name_never_means_the_only_lab(run: Callable[..., Result], labctl_home: Path) -> None:
    assert run("plan", "--distro", "debian").code == 0
    lab = labctl_home / "labs" / "debian-12"
    for argv in (("destroy", "-y", "--lab", ""), ("status", "--lab", " "), ("halt", "--lab", "")):
        result = run(*argv)
        assert result.code != 0 and "--lab was given an empty name" in result.err, result.err
        assert "Traceback" not in result.err
    assert (lab / "lab.json").is_file()  # `destroy -y --lab "$UNSET"` destroyed nothing


def test_infinity_in_a_lab_record_is_a_damaged_file(run: Callable[..., Result], labctl_home: Path) -> None:
    assert run("plan", "--distro", "debian").code == 0
    meta = labctl_home / "labs" / "debian-12" / "lab.json"
    text = meta.read_text()
    record = json.loads(text)
    record["machines"][0]["memory_mb"] = 1
    meta.write_text(json.dumps(record).replace('"memory_mb": 1', '"memory_mb": Infinity'))
    for argv in (("status",), ("list",), ("status", "--json")):
        result = run(*argv)
        assert "Traceback" not in result.err + result.out
        assert result.code != 0 and "damaged" in result.err, (argv, result.err)


def test_infinity_in_the_caches_record_means_they_are_not_running(tmp_path: Path) -> None:
    from labctl.cache.services import HostCaches

    caches = HostCaches(tmp_path)
    caches.root.mkdir(parents=True)
    caches.state_file.write_text('{"address": "192.168.121.1", "apt_port": Infinity, "pypi_port": NaN}')
    assert caches.endpoints() is None
    assert [c.running for c in caches.status()] == [False, False]


def test_the_sheet_never_replaces_what_is_not_a_regular_file(run: Callable[..., Result], isolated_home: Path,
                                                             tmp_path: Path) -> None:
    import os
    import stat

    (isolated_home / "lab.yaml").write_text("name: room\ndefaults: {memory: 1G, cpus: 1, disk: 10G}\n"
                                            "classroom: {seats: 2, ssh_port: 24100, web_port: 24200}\n")
    assert run("plan").code == 0
    fifo = tmp_path / "sheet-pipe"
    os.mkfifo(fifo)
    result = run("sheet", "-o", str(fifo))
    assert result.code == 2 and "not a regular file" in result.err, result.err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the FIFO someone reads from
    written = run("sheet", "-o", str(tmp_path / "sheet.html"))
    assert written.code == 0, written.err
    assert stat.S_IMODE((tmp_path / "sheet.html").stat().st_mode) == 0o600


def test_class_ports_stay_clear_of_the_hosts_own(catalog: object) -> None:
    import pytest

    from labctl.cache.services import APT_PORT, PYPI_PORT
    from labctl.classroom.seats import RESERVED_PORTS
    from labctl.errors import LabFileError
    from labctl.labfile import lab_from_dict
    from labctl.mirrors import GIT_PORT

    assert {(GIT_PORT, GIT_PORT), (min(APT_PORT, PYPI_PORT), max(APT_PORT, PYPI_PORT))} <= {
        (low, high) for low, high, _ in RESERVED_PORTS}
    for ports, words in (({"ssh_port": 9410}, "9418-9418, labctl's git daemon"),
                         ({"web_port": 3140}, "labctl's package caches"),
                         ({"ssh_port": 5895}, "the VMs' consoles")):
        raw = {"name": "c", "classroom": {"seats": 12, "ssh_port": 2200, "web_port": 8000, **ports}}
        with pytest.raises(LabFileError) as err:
            lab_from_dict(raw, catalog)  # type: ignore[arg-type]
        assert words in err.value.message
    lab_from_dict({"name": "c", "classroom": {"seats": 12, "ssh_port": 9405}}, catalog)  # type: ignore[arg-type]


def test_a_listen_address_the_host_lacks_is_refused_at_plan(run: Callable[..., Result], isolated_home: Path,
                                                            labctl_home: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of any host: nothing is sent, the kernel refuses the bind.
    (isolated_home / "lab.yaml").write_text("name: room\ndefaults: {memory: 1G, cpus: 1, disk: 10G}\n"
                                            "classroom: {seats: 2, listen: 192.0.2.1}\n")
    result = run("plan")
    assert result.code != 0 and "192.0.2.1 is not an address of this host" in result.err, result.err
    assert not (labctl_home / "labs" / "room").exists()


def test_removing_a_trainee_moves_no_one_else(run: Callable[..., Result], isolated_home: Path) -> None:
    """Ada's printed card must not open Grace's seat after Ada leaves the list."""
    said: list[str] = []

    def plan(trainees: str, seats: int = 3) -> dict[str, str | None]:
        (isolated_home / "lab.yaml").write_text(
            "name: room\ndefaults: {memory: 1G, cpus: 1, disk: 10G}\n"
            f"classroom: {{seats: {seats}, ssh_port: 24300, web_port: 24400, trainees: [{trainees}]}}\n")
        planned = run("plan", "--json")
        assert planned.code == 0, planned.err
        said[:] = json.loads(planned.out)["warnings"]
        status = json.loads(run("status", "--json").out)["machines"]
        return {m["name"]: m["trainee"] for m in status}

    assert plan("Ada, Grace, Alan") == {"seat-01": "Ada", "seat-02": "Grace", "seat-03": "Alan"}
    assert plan("Grace, Alan") == {"seat-01": None, "seat-02": "Grace", "seat-03": "Alan"}
    assert not [w for w in said if "someone had it before" in w]
    # Ada's seat stays free while a seat no one ever had is left: Barbara takes seat-04; then Edsger
    # gets Ada's seat, with a warning (Ada's card still opens it).
    assert plan("Grace, Alan, Barbara", seats=4) == {"seat-01": None, "seat-02": "Grace", "seat-03": "Alan",
                                                     "seat-04": "Barbara"}
    assert not [w for w in said if "someone had it before" in w]
    assert plan("Grace, Alan, Barbara, Edsger", seats=4) == {"seat-01": "Edsger", "seat-02": "Grace",
                                                             "seat-03": "Alan", "seat-04": "Barbara"}
    assert [w for w in said if "someone had it before" in w] == [
        "seat-01 goes to Edsger, but someone had it before: their card still opens it (its passwords stay until"
        " the seat is made anew); to give a newcomer a seat of their own, raise classroom.seats"]


def test_the_sheet_names_each_seats_host_as_status_does(run: Callable[..., Result], isolated_home: Path,
                                                        labctl_home: Path) -> None:
    from labctl.classroom.access import build_sheet
    from labctl.machine_status import MachineStatus
    from labctl.state import LabHome

    (isolated_home / "lab.yaml").write_text("name: room\ndefaults: {memory: 1G, cpus: 1, disk: 10G}\n"
                                            "classroom: {seats: 2, ssh_port: 24500, web_port: 24600}\n")
    assert run("plan").code == 0
    statuses = [MachineStatus(f"seat-0{n}", "allinone", f"192.168.1.{n}", f"d{n}", "running", (), None, None, None,
                              "vagrant", host=host) for n, host in ((1, None), (2, "rack2"))]
    sheet = build_sheet(LabHome(labctl_home).lab("room"), statuses, "trainer-laptop")
    assert [c.host for c in sheet.cards] == ["trainer-laptop", "rack2"]
