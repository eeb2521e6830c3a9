"""Use-cases with a fake hypervisor handed in through the command's Context: what they ask of the
host, and what they make of its answers, without libvirt."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeHost, FakeVagrant

from labctl import records
from labctl.catalog import default_catalog
from labctl.context import Context
from labctl.errors import NotEnoughResources
from labctl.host import HostFacts
from labctl.labfile import lab_from_dict
from labctl.lifecycle import destroy_lab, halt_lab, list_labs, up_lab
from labctl.state import LabHome


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


def context(tmp_path: Path, fake: FakeHost, vagrant: FakeVagrant | None = None) -> Context:
    """A command's context whose hypervisor and vagrant are the fakes."""
    return Context(LabHome(tmp_path / "home"), tmp_path / "cache", "fake:///", open_hypervisor=lambda _uri: fake,
                   make_vagrant=lambda _folder, _log, _uri: vagrant or FakeVagrant(fake))


def make_lab(ctx: Context, name: str, machines: list[str]) -> None:
    lab_dir = ctx.home.lab(name)
    lab_dir.create()
    records.write_lab(lab_dir, records.LabRecord(name, machines=tuple(records.MachineRecord(m) for m in machines)))


def test_halt_asks_for_the_labs_domains_and_names_the_forced_ones(tmp_path: Path) -> None:
    fake = FakeHost(domains={"labctl-web-a": "running", "labctl-web-b": "running"}, stubborn={"labctl-web-b"})
    ctx = context(tmp_path, fake)
    make_lab(ctx, "web", ["a", "b"])
    reporter = Reporter()
    assert halt_lab(ctx.home.lab("web"), ctx, [], reporter) == ["b"]  # type: ignore[arg-type]
    assert fake.calls == [("shut_down", ["labctl-web-a", "labctl-web-b"])]
    assert "a: halted" in reporter.lines


def test_list_reads_every_lab_through_one_hypervisor(tmp_path: Path) -> None:
    fake = FakeHost(domains={"labctl-web-a": "running"})
    ctx = context(tmp_path, fake)
    make_lab(ctx, "web", ["a", "b"])
    make_lab(ctx, "db", ["x"])
    labs = {lab.name: lab.states for lab in list_labs(ctx)}
    assert labs == {"web": {"running": 1, "not created": 1}, "db": {"not created": 1}}


HOST = HostFacts(cpus=16, memory_mb=64 * 1024, cpu_flags=frozenset({"vmx"}), kvm_usable=True)


def duo(name: str = "duo") -> object:
    raw = {"name": name, "defaults": {"distro": "debian:12", "memory": "4G", "cpus": 2},
           "machines": [{"name": "ctl", "role": "controller"}, {"name": "cpu", "role": "compute"}]}
    return lab_from_dict(raw, default_catalog())


def test_up_validates_then_boots_only_what_is_not_running(tmp_path: Path) -> None:
    host = FakeHost(domains={"labctl-duo-ctl": "running"})
    vagrant = FakeVagrant(host, lab="duo")
    ctx = context(tmp_path, host, vagrant)
    made: list[str] = []
    plan, statuses = up_lab(duo(), None, ctx, HOST, Reporter(), "http://deb.debian.org/debian",  # type: ignore[arg-type]
                            before_create=lambda _lab: made.append("caches"))
    kinds = [c[0] for c in vagrant.calls]
    assert kinds[:2] == ["check_plugin", "validate"] and ("validate", True) in vagrant.calls
    assert ("up", ["cpu"]) in vagrant.calls  # ctl runs already
    # The management network made by labctl before Vagrant boots (so no lab's destroy removes it).
    assert host.calls.index(("management_address", None)) < host.calls.index(("mark_started", ["labctl-duo-cpu"]))
    assert ("mark_started", ["labctl-duo-cpu"]) in host.calls  # its uptime counts from now
    # Every running machine fenced in (labctl.isolation), the one that ran already too; a lab that is no
    # classroom on the management network alone (its controller and compute talk on the lab network).
    fenced = [c[1] for c in host.calls if c[0] == "fence"]
    assert fenced == [["labctl-duo-ctl", "vagrant-libvirt"], ["labctl-duo-cpu", "vagrant-libvirt"]]
    assert made == ["caches"]
    assert {s.name: s.state for s in statuses} == {"ctl": "running", "cpu": "running"}
    assert records.read_lab(ctx.home.lab("duo")).machine_names == ["ctl", "cpu"]
    assert plan.vagrantfile.is_file()


def test_up_refuses_before_anything_is_made_when_the_host_is_full(tmp_path: Path) -> None:
    host = FakeHost(memory_mb=6 * 1024)
    vagrant = FakeVagrant(host, lab="duo")
    ctx = context(tmp_path, host, vagrant)
    made: list[str] = []
    with pytest.raises(NotEnoughResources, match=r"2 x 4096 = 8192 MiB.*6144 MiB available"):
        up_lab(duo(), None, ctx, HOST, Reporter(), "http://deb.debian.org/debian",  # type: ignore[arg-type]
               before_create=lambda _lab: made.append("caches"))
    assert not any(c[0] == "up" for c in vagrant.calls) and made == []
    assert not ctx.home.lab("duo").path.exists()


def test_destroy_asks_vagrant_then_libvirt_for_what_is_left(tmp_path: Path) -> None:
    host = FakeHost()
    vagrant = FakeVagrant(host, lab="duo")
    ctx = context(tmp_path, host, vagrant)
    up_lab(duo(), None, ctx, HOST, Reporter(), "http://deb.debian.org/debian")  # type: ignore[arg-type]
    lab_dir = ctx.home.lab("duo")
    (lab_dir.path / ".vagrant").mkdir()
    vagrant.lab = "nothing"  # this vagrant destroys nothing: libvirt must remove what is left
    host.calls.clear()
    removed = destroy_lab(lab_dir, ctx, Reporter())  # type: ignore[arg-type]
    assert ("destroy", None) in vagrant.calls
    # vagrant-libvirt may have removed the management network other (halted) labs need: made again.
    assert ("management_address", None) in host.calls
    leftovers = next(arg for kind, arg in host.calls if kind == "remove_leftovers")
    assert leftovers == (["labctl-duo-cpu", "labctl-duo-ctl"], "labctl-duo")
    assert sorted(removed) == ["labctl-duo-cpu", "labctl-duo-ctl"] and not lab_dir.path.exists()


def test_up_of_a_machine_made_anew_forgets_its_predecessor(tmp_path: Path) -> None:
    """A machine whose domain was gone (destroyed by hand, or never made) is a new machine: the stack
    record and the host keys of the one that had its name and addresses go, those of the machine
    that still runs stay (a kept record would say "stacked" of a bare machine; a kept key would be
    taken for a changed host)."""
    import base64

    lab = duo()
    host = FakeHost(domains={"labctl-duo-ctl": "running"})
    ctx = context(tmp_path, host, FakeVagrant(host, lab="duo"))
    lab_dir = ctx.home.lab("duo")
    make_lab(ctx, "duo", ["ctl", "cpu"])
    state = records.read(lab_dir)
    state.stack.update(ctl=records.StackRecord("ok"), cpu=records.StackRecord("ok"))
    records.write(lab_dir, state)
    ips = {m.name: m.ip for m in lab.machines}  # type: ignore[attr-defined]
    key = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
    lab_dir.known_hosts.write_text("".join(f"{ip} ssh-ed25519 {key}\n" for ip in ips.values()))
    up_lab(lab, None, ctx, HOST, Reporter(), "http://deb.debian.org/debian")  # type: ignore[arg-type]
    assert set(records.read(lab_dir).stack) == {"ctl"}
    kept = lab_dir.known_hosts.read_text()
    assert ips["ctl"] in kept and ips["cpu"] not in kept


def test_resume_brings_back_the_caches_and_their_relays_for_the_machines_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine may have restarted since `up`: resume starts the lab's caches again (and relays them to
    the hosts of the machines it starts), before the machines; a lab without caches is left alone."""
    from labctl.hosts import services
    from labctl.lifecycle import resume_lab

    class CachesDown(Exception):
        pass

    asked: list[tuple[bool, set[str]]] = []

    def caches_for(used: bool, hosts: set[str], _ctx: object, _reporter: object) -> None:
        asked.append((used, hosts))
        if used:
            raise CachesDown  # as a cache that cannot start: nothing is started without it

    monkeypatch.setattr(services, "caches_for", caches_for)
    fake = FakeHost(domains={"labctl-cls-a": "shutoff", "labctl-cls-b": "shutoff", "labctl-cls-c": "shutoff"})
    vagrant = FakeVagrant(fake)
    ctx = context(tmp_path, fake, vagrant)
    lab_dir = ctx.home.lab("cls")
    lab_dir.create()
    records.write_lab(lab_dir, records.LabRecord("cls", machines=(
        records.MachineRecord("a"), records.MachineRecord("b", host="far"), records.MachineRecord("c", host="other")),
        caches=True))
    assert records.read_lab(lab_dir).caches is True
    with pytest.raises(CachesDown):
        resume_lab(lab_dir, ctx, ["a", "b"], Reporter())  # type: ignore[arg-type]
    assert asked == [(True, {"far"})] and not [c for c in vagrant.calls if c[0] == "up"]
    records.write_lab(lab_dir, records.LabRecord("cls", machines=(records.MachineRecord("a"),)))
    resume_lab(lab_dir, ctx, [], Reporter())  # type: ignore[arg-type]
    assert asked[-1] == (False, set()) and [c for c in vagrant.calls if c[0] == "up"]


def test_halting_a_seat_of_seat_networks_takes_its_ports_off_its_lease(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With seat networks, a seat's ports lead to its management lease, which DHCP may hand to another
    machine once the seat is off: halting it points the ports anew (its own lab address never moves)."""
    from labctl import lifecycle
    from labctl.classroom import access
    from labctl.seating import Classroom, Seat

    pointed: list[str] = []
    monkeypatch.setattr(access, "forwarder_pid", lambda _lab_dir: 4242)
    monkeypatch.setattr(lifecycle, "open_doors", lambda lab_dir, _ctx, _reporter: pointed.append(lab_dir.name))
    fake = FakeHost(domains={"labctl-cls-seat-01": "running", "labctl-cls-seat-02": "running"})
    ctx = context(tmp_path, fake)
    lab_dir = ctx.home.lab("cls")
    lab_dir.create()
    seats = (Seat(1), Seat(2))
    for own_networks, expected in ((True, ["cls"]), (False, [])):
        pointed.clear()
        records.write_lab(lab_dir, records.LabRecord(
            "cls", machines=(records.MachineRecord("seat-01"), records.MachineRecord("seat-02")),
            classroom=Classroom(seats, seat_networks=own_networks)))
        lifecycle.halt_lab(lab_dir, ctx, ["seat-02"], Reporter())  # type: ignore[arg-type]
        assert pointed == expected


def test_a_seat_is_remade_only_from_a_stacked_seat_01_and_its_base(tmp_path: Path) -> None:
    """Seats on networks of their own are never stacked but as copies: without seat-01 stacked, or without
    the class's base, `stack` says how to make the class anew and touches no machine."""
    from labctl.errors import LabctlError
    from labctl.provision import StackResult
    from labctl.stacking.machines import record
    from labctl.stacking.remake import remake_seats
    from labctl.stacking.request import StackRequest

    fake = FakeHost(domains={"labctl-cls-seat-01": "running", "labctl-cls-seat-02": "running"})
    fake.base_named = lambda _name: None  # type: ignore[attr-defined]
    ctx = context(tmp_path, fake)
    lab_dir = ctx.home.lab("cls")
    lab_dir.create()
    lab = lab_from_dict({"name": "cls", "defaults": {"distro": "debian:12", "memory": "1G", "cpus": 1, "disk": "10G"},
                         "classroom": {"seats": 2, "seat_networks": True}}, default_catalog())
    for seat_01, said in ((None, "seat-01 has not stacked"), ("ok", "and it is gone")):
        if seat_01:
            record(lab_dir, [StackResult("seat-01", seat_01)])
        with pytest.raises(LabctlError) as err:
            remake_seats(lab, lab_dir, [], Reporter(), fake, None, ["seat-02"], StackRequest())  # type: ignore[arg-type]
        assert said in err.value.message and "labctl destroy --lab cls" in (err.value.hint or "")
    assert not [c for c in fake.calls if c[0] in ("shut_down", "start")]
