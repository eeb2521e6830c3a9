"""Use-cases with a fake hypervisor handed in through the command's Context: what they ask of the
host, and what they make of its answers, without libvirt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from labctl import records
from labctl.hypervisor import DomainInfo
from labctl.lifecycle import Context, halt_lab, list_labs
from labctl.state import LabHome


class FakeHypervisor:
    """Answers like a host where `running` domains run; records the shutdowns asked."""

    def __init__(self, running: set[str], stubborn: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.running = running
        self.stubborn = stubborn
        self.asked: list[list[str]] = []

    def domain(self, name: str) -> DomainInfo | None:
        if name not in self.running:
            return None
        return DomainInfo(name, "running", 1024, 1, ("192.168.121.5",), 60.0)

    def shut_down(self, names: list[str], timeout: float, on_state: Callable[[str, str], None]) -> list[str]:
        self.asked.append(names)
        for name in names:
            on_state(name, "halted")
        return [n for n in names if n in self.stubborn]

    def close(self) -> None:
        pass


class Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, text: str) -> None:
        self.lines.append(text)

    def warn(self, text: str) -> None:
        self.lines.append(f"warning: {text}")

    def machines(self, names: list[str], initial: str) -> object:
        reporter = self

        class Progress:
            def __enter__(self) -> Progress:
                return self

            def __exit__(self, *_: object) -> None:
                pass

            def update(self, name: str, text: str) -> None:
                reporter.lines.append(f"{name}: {text}")
        return Progress()


def context(tmp_path: Path, fake: FakeHypervisor) -> Context:
    ctx = Context(LabHome(tmp_path / "home"), tmp_path / "cache", "fake:///")
    ctx._hypervisor.append(fake)  # type: ignore[arg-type]  # the test hands in its fake
    return ctx


def make_lab(ctx: Context, name: str, machines: list[str]) -> None:
    lab_dir = ctx.home.lab(name)
    lab_dir.create()
    records.write_lab(lab_dir, records.LabRecord(name, machines=tuple(records.MachineRecord(m) for m in machines)))


def test_halt_asks_for_the_labs_domains_and_names_the_forced_ones(tmp_path: Path) -> None:
    fake = FakeHypervisor({"labctl-web-a", "labctl-web-b"}, stubborn={"labctl-web-b"})
    ctx = context(tmp_path, fake)
    make_lab(ctx, "web", ["a", "b"])
    reporter = Reporter()
    assert halt_lab(ctx.home.lab("web"), ctx, [], reporter) == ["b"]  # type: ignore[arg-type]
    assert fake.asked == [["labctl-web-a", "labctl-web-b"]]
    assert "a: halted" in reporter.lines


def test_list_reads_every_lab_through_one_hypervisor(tmp_path: Path) -> None:
    fake = FakeHypervisor({"labctl-web-a"})
    ctx = context(tmp_path, fake)
    make_lab(ctx, "web", ["a", "b"])
    make_lab(ctx, "db", ["x"])
    labs = {lab.name: lab.states for lab in list_labs(ctx)}
    assert labs == {"web": {"running": 1, "not created": 1}, "db": {"not created": 1}}
