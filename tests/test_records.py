"""lab.json read through one typed reader: hand edits never crash labctl nor lead it out of the lab."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result
from labctl import records
from labctl.errors import LabctlError
from labctl.state import LabDir, LabHome


def test_lab_json_round_trips_with_its_format(tmp_path: Path) -> None:
    lab_dir = LabDir("t", tmp_path / "t")
    lab_dir.create()
    record = records.LabRecord("t", tmp_path / "lab.yaml", "0.1.0", "10.0.0.0/24",
                               (records.MachineRecord("ctl", "controller", "10.0.0.10", "debian:12", "b", "vagrant",
                                                      8192, 4, 40),), {"debian/bookworm64": "labctl/debian-12"})
    records.write_lab(lab_dir, record)
    assert json.loads(lab_dir.meta_file.read_text())["format"] == records.LAB_FORMAT
    assert records.read_lab(lab_dir) == record
    assert records.lab_source(lab_dir) == tmp_path / "lab.yaml"


@pytest.mark.parametrize("machines", [
    [{"name": "../../etc"}, {"name": "ok"}], [{"name": "/tmp/x"}, {"name": "ok"}], [{"name": 5}, {"name": "ok"}],
    [{"name": "ok", "ip": ["x"], "memory_mb": "lots", "user": 3}], ["ok", {"name": "ok"}], [None, {"name": "ok"}],
])
def test_hand_edited_machines_are_read_safely(tmp_path: Path, machines: list[object]) -> None:
    lab_dir = LabDir("t", tmp_path / "t")
    lab_dir.create()
    lab_dir.write_meta({"name": "t", "machines": machines, "boxes": ["not", "a", "map"], "classroom": "x"})
    record = records.read_lab(lab_dir)
    assert record.machine_names == ["ok"]
    m = record.machines[0]
    assert (m.ip, m.memory_mb, m.user) == ("", None, "vagrant")
    assert record.boxes == {} and record.classroom is None


def test_a_newer_format_is_one_clear_line(run: Callable[..., Result], isolated_home: Path, labctl_home: Path) -> None:
    (isolated_home / "lab.yaml").write_text("name: t\nmachines: [{name: m, memory: 1G, disk: 10G}]\n")
    assert run("plan").code == 0
    lab_dir = LabHome(labctl_home).lab("t")
    meta = json.loads(lab_dir.meta_file.read_text())
    lab_dir.meta_file.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(LabctlError, match="format 99"):
        records.read_lab(lab_dir)
    result = run("logs", "m")
    assert result.code == 2 and "lab.json is of format 99" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("text", ["", "[1]", "NaN", '{"seat-01": "ok"}', '{"seat-01": {"clean": {"status": 3}}}',
                                  '{"seat-01": {"clean": "ok"}}'])
def test_hand_edited_snapshot_records_read_as_not_stacked(tmp_path: Path, text: str) -> None:
    """snapshots.json is read in records.py only; whatever a hand left there reads as "had not
    stacked" (restore then stacks again), and a new record is kept beside it."""
    lab_dir = LabDir("lab", tmp_path)
    (tmp_path / "snapshots.json").write_text(text)
    assert all(record is None for kept in records.snapshot_records(lab_dir).values() for record in kept.values())
    done = records.StackRecord("ok", "Starting Keystone", 60)
    records.keep_snapshot_record(lab_dir, "seat-02", "stacked", done)
    assert records.snapshot_records(lab_dir)["seat-02"] == {"stacked": done}
    records.forget_snapshot_record(lab_dir, "seat-02", "stacked")
    assert records.snapshot_records(lab_dir).get("seat-02") == {}
