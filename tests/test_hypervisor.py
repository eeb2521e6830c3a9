"""The libvirt layer against libvirt's own test driver (test:///default): real libvirt API, no VMs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import libvirt
import pytest

from labctl.adapters import hypervisor
from labctl.adapters.hypervisor import Hypervisor
from labctl.errors import LabctlError, NotEnoughResources
from labctl.labfile import lab_from_dict
from labctl.lifecycle import check_capacity, image_disk_gb

DOMAIN_XML = """<domain type='test'><name>{name}</name><memory unit='MiB'>{mb}</memory><vcpu>2</vcpu>
<os><type>hvm</type></os><devices><interface type='network'><source network='{net}'/></interface>
</devices></domain>"""
NETWORK_XML = """<network><name>{name}</name><bridge name='virbr{n}'/>
<ip address='10.77.{n}.1' netmask='255.255.255.0'/></network>"""
VOLUME_XML = "<volume><name>{name}</name><capacity unit='MiB'>8</capacity></volume>"


NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads><mhz>2000</mhz></cpu>
  <memory>8388608</memory>
  <network><name>default</name><bridge name='virbr0'/><ip address='192.168.122.1' netmask='255.255.255.0'/>
  </network>
  <pool type='dir'><name>default</name><target><path>/default</path></target></pool>
</node>
"""


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[libvirt.virConnect]:
    # test:///default is shared by a whole process; a test driver opened on a node file of its own
    # is a private hypervisor, so tests cannot see each other.
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    c = hypervisor.connect(f"test://{node}")
    yield c
    c.close()


def define(conn: libvirt.virConnect, name: str, net: str = "default", mb: int = 512, start: bool = True) -> None:
    dom = conn.defineXML(DOMAIN_XML.format(name=name, mb=mb, net=net))
    if start:
        dom.create()


def test_capacity(conn: libvirt.virConnect) -> None:
    cap = Hypervisor(conn=conn).capacity()
    info = conn.getInfo()
    assert (cap.cpus, cap.memory_total_mb) == (info[2], info[1]) == (4, 8192)
    assert 0 < cap.memory_available_mb <= cap.memory_total_mb
    assert (cap.disk_free_gb, cap.disk_path) == (100, "storage pool default")


def test_domain_info_states(conn: libvirt.virConnect) -> None:
    define(conn, "labctl-t-a", mb=768)
    define(conn, "labctl-t-b", start=False)
    a = Hypervisor(conn=conn).domain("labctl-t-a")
    b = Hypervisor(conn=conn).domain("labctl-t-b")
    assert a is not None and b is not None
    assert (a.state, a.memory_mb, a.vcpus) == ("running", 768, 2)
    assert (b.state, b.addresses, b.uptime_s) == ("shutoff", (), None)
    assert Hypervisor(conn=conn).domain("labctl-t-missing") is None
    conn.lookupByName("labctl-t-a").suspend()
    paused = Hypervisor(conn=conn).domain("labctl-t-a")
    assert paused is not None and paused.state == "paused"


def test_addresses_come_from_libvirt() -> None:
    conn = hypervisor.connect("test:///default")  # only read: its running domain "test" has addresses
    info = Hypervisor(conn=conn).domain("test")
    assert info is not None and info.state == "running"
    expected = [a["addr"] for i in conn.lookupByName("test").interfaceAddresses(0).values() for a in i["addrs"]
                if a["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4]
    assert list(info.addresses) == expected and expected


def test_remove_leftovers_takes_only_the_labs_things(conn: libvirt.virConnect) -> None:
    conn.networkCreateXML(NETWORK_XML.format(name="labctl-t", n=1))
    conn.networkDefineXML(NETWORK_XML.format(name="labctl-t-other", n=2))
    define(conn, "labctl-t-a", net="labctl-t")
    define(conn, "labctl-t-b", net="labctl-t", start=False)
    define(conn, "labctl-t-other", net="default")     # another lab's machine with a similar name
    define(conn, "labctl-tt-a", net="default")
    pool = conn.storagePoolLookupByName("default")
    for vol in ("labctl-t-a.img", "labctl-t-b.img", "labctl-t-other.img", "box_image_0.img"):
        pool.createXML(VOLUME_XML.format(name=vol), 0)

    removed = Hypervisor(conn=conn).remove_leftovers(["labctl-t-a", "labctl-t-b", "labctl-t-c"], "labctl-t")

    assert sorted(removed) == ["domain labctl-t-a", "domain labctl-t-b", "network labctl-t",
                               "volume default/labctl-t-a.img", "volume default/labctl-t-b.img"]
    assert sorted(d.name() for d in conn.listAllDomains()) == ["labctl-t-other", "labctl-tt-a"]
    assert sorted(pool.listVolumes()) == ["box_image_0.img", "labctl-t-other.img"]
    assert "labctl-t-other" in [n.name() for n in conn.listAllNetworks()]
    assert Hypervisor(conn=conn).remove_leftovers(["labctl-t-a"], "labctl-t") == []  # idempotent


def test_network_in_use_by_another_domain_is_kept(conn: libvirt.virConnect) -> None:
    conn.networkCreateXML(NETWORK_XML.format(name="labctl-t", n=3))
    define(conn, "labctl-t-a", net="labctl-t")
    define(conn, "stranger", net="labctl-t")
    assert Hypervisor(conn=conn).remove_leftovers(["labctl-t-a"], "labctl-t") == ["domain labctl-t-a"]
    assert conn.networkLookupByName("labctl-t").isActive()


def test_unreachable_libvirt_says_how_to_start_it() -> None:
    with pytest.raises(hypervisor.LibvirtUnavailable) as err:
        hypervisor.connect("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    assert "not reachable" in err.value.message
    assert err.value.hint and "libvirtd" in err.value.hint
    assert ("systemctl" in err.value.hint) == Path("/run/systemd/system").is_dir()


def test_capacity_refusal_shows_the_arithmetic(catalog: object) -> None:
    lab = lab_from_dict({"name": "big", "defaults": {"memory": "8G"},
                         "machines": [{"name": "ctl", "role": "controller", "memory": "16G"},
                                      {"name": "cmp", "role": "compute", "count": 3}]}, catalog)  # type: ignore[arg-type]
    cap = SimpleNamespace(cpus=8, memory_total_mb=32768, memory_available_mb=30000, disk_free_gb=500,
                          disk_path="/var/lib/libvirt/images")
    with pytest.raises(NotEnoughResources) as err:
        check_capacity(lab.machines, cap)
    assert "16384 + 3 x 8192 = 40960 MiB" in err.value.message and "30000 MiB available" in err.value.message
    check_capacity(lab.machines[1:], cap)  # 24576 MiB fits
    small_disk = SimpleNamespace(**{**cap.__dict__, "memory_available_mb": 10**6, "disk_free_gb": 30})
    with pytest.raises(NotEnoughResources, match=r"4 x 20 = 80 GB.*30 GB free"):
        check_capacity(lab.machines, small_disk)
    one = lab_from_dict({"name": "dev", "machines": [{"name": "dev1"}]}, catalog)  # type: ignore[arg-type]
    check_capacity(one.machines, small_disk)  # 20 GB fits 30
    with pytest.raises(NotEnoughResources) as err:  # and the image its up keeps once stacked does not
        check_capacity(one.machines, small_disk, image_disk_gb(one, one.machines))
    assert ("the machine to start and the stacked image kept of it will use up to 2 x 20 = 40 GB" in err.value.message
            and err.value.hint and "labctl images prune" in err.value.hint)
    assert image_disk_gb(lab, lab.machines) == image_disk_gb(one, []) == 0  # several machines; nothing to start
    assert isinstance(err.value, LabctlError)


def test_shut_down_reports_every_machine(conn: libvirt.virConnect) -> None:
    define(conn, "labctl-t-a")
    define(conn, "labctl-t-b")
    define(conn, "labctl-t-c", start=False)
    seen: list[tuple[str, str]] = []
    forced = Hypervisor(conn=conn).shut_down(["labctl-t-a", "labctl-t-b", "labctl-t-c", "labctl-t-d"], 10,
                                  lambda name, state: seen.append((name, state)))
    assert forced == []
    assert ("labctl-t-c", "already off") in seen and ("labctl-t-d", "not created") in seen
    assert [s for n, s in seen if n == "labctl-t-a"] == ["shutting down", "halted"]
    assert all(Hypervisor(conn=conn).domain(f"labctl-t-{m}").state == "shutoff" for m in "abc")  # type: ignore[union-attr]


def test_domains_found_by_their_vagrantfile(conn: libvirt.virConnect, tmp_path: Path) -> None:
    """A lab whose records are lost: its domains are still found, by vagrant-libvirt's description."""
    folder = tmp_path / "labs" / "t"
    for name, source in (("labctl-t-a", folder), ("labctl-t-b", folder), ("labctl-t-x", tmp_path / "labs" / "tt")):
        xml = DOMAIN_XML.format(name=name, mb=256, net="default").replace(
            "<vcpu>", f"<description>Source: {source}/Vagrantfile</description><vcpu>")
        conn.defineXML(xml)
    define(conn, "unrelated", start=False)
    assert Hypervisor(conn=conn).domains_of(folder) == ["labctl-t-a", "labctl-t-b"]


def test_destroy_never_removes_another_labs_vm_of_the_same_name(conn: libvirt.virConnect, tmp_path: Path) -> None:
    """Lab `web` (machine `db-x1`) and lab `web-db` (machine `x1`) both name a VM labctl-web-db-x1; the
    VM vagrant made from web's folder is web's: destroying web-db leaves it, and its disk."""
    define(conn, "labctl-web-db-x1", net="default")
    conn.lookupByName("labctl-web-db-x1").setMetadata(
        libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, f"Source: {tmp_path}/labs/web/Vagrantfile", None, None)
    pool = conn.storagePoolLookupByName("default")
    pool.createXML(VOLUME_XML.format(name="labctl-web-db-x1.img"), 0)
    removed = Hypervisor(conn=conn).remove_leftovers(["labctl-web-db-x1"], "labctl-web-db",
                                                     owner=tmp_path / "labs/web-db")
    assert removed == [] and "labctl-web-db-x1" in sorted(d.name() for d in conn.listAllDomains())
    assert "labctl-web-db-x1.img" in pool.listVolumes()
    assert Hypervisor(conn=conn).domains_of(tmp_path / "labs" / "web") == ["labctl-web-db-x1"]
    removed = Hypervisor(conn=conn).remove_leftovers(["labctl-web-db-x1"], "labctl-web", owner=tmp_path / "labs/web")
    assert removed == ["domain labctl-web-db-x1", "volume default/labctl-web-db-x1.img"]


def test_the_adapter_owns_its_connection_and_speaks_labctls_errors() -> None:
    """A Hypervisor answers through its own connection; libvirt's errors leave it as labctl's."""
    from labctl.adapters.hypervisor import LibvirtFailed, LibvirtUnavailable

    with Hypervisor("test:///default") as hv:
        assert hv.domain("test") is not None and hv.domain("no-such-domain") is None
        assert hv.capacity().cpus > 0
    closed = libvirt.open("test:///default")
    closed.close()
    broken = Hypervisor("test:///default", closed)  # libvirtd gone under a running command
    for call in (lambda: broken.domain("test"), lambda: broken.capacity(), lambda: broken.snapshots("test")):
        with pytest.raises(LibvirtFailed) as err:
            call()
        assert isinstance(err.value, LabctlError) and "is libvirtd still running?" in (err.value.hint or "")
    with pytest.raises(LibvirtUnavailable):
        Hypervisor.open("qemu+unix:///system?socket=/nonexistent/libvirt-sock")


def test_uptime_is_dated_by_labctl_in_the_running_domains_metadata(conn: libvirt.virConnect) -> None:
    """Uptime from libvirt itself (any host): labctl dates a run it started, and the date goes
    with the run."""
    define(conn, "labctl-t-u", start=False)
    Hypervisor(conn=conn).start(["labctl-t-u"])
    info = Hypervisor(conn=conn).domain("labctl-t-u")
    assert info is not None and info.uptime_s is not None and 0 <= info.uptime_s < 60
    dom = conn.lookupByName("labctl-t-u")
    dom.destroy()
    dom.create()  # started by something else than labctl: no date, no uptime
    again = Hypervisor(conn=conn).domain("labctl-t-u")
    assert again is not None and again.state == "running" and again.uptime_s is None
    Hypervisor(conn=conn).mark_started(["labctl-t-u", "labctl-t-missing"])
    dated = Hypervisor(conn=conn).domain("labctl-t-u")
    assert dated is not None and dated.uptime_s is not None


def test_is_local() -> None:
    assert hypervisor.is_local("qemu:///system") and hypervisor.is_local("test:///default")
    assert not hypervisor.is_local("qemu+ssh://labctl@rack2/system")


def disk_domain(conn: libvirt.virConnect, name: str, gib: int = 1, in_pool: bool = True) -> None:
    """A domain whose disk is a volume of the test driver's pool `default` (at /default), as
    vagrant-libvirt makes them; or a file in no pool."""
    if in_pool:
        conn.storagePoolLookupByName("default").createXML(
            f"<volume><name>{name}.img</name><capacity unit='GiB'>{gib}</capacity>"
            "<target><format type='qcow2'/></target></volume>", 0)
    source = f"/default/{name}.img" if in_pool else f"/elsewhere/{name}.img"
    conn.defineXML(f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
                   f"<devices><disk type='file' device='disk'><source file='{source}'/><target dev='vda'/></disk>"
                   "</devices></domain>")


def volumes(conn: libvirt.virConnect) -> dict[str, str]:
    pool = conn.storagePoolLookupByName("default")
    return {v.name(): v.XMLDesc(0) for v in pool.listAllVolumes()}


def test_clone_disks_through_the_volume_api(conn: libvirt.virConnect) -> None:
    """The base is a read-only volume of the pool; every seat's volume, the template's too, an overlay
    on it under its old name: nothing outside libvirt's API, so a remote host's pool works the same."""
    import xml.etree.ElementTree as ET

    for seat in ("seat-01", "seat-02", "seat-03"):
        disk_domain(conn, f"labctl-t-{seat}")
    base = Hypervisor(conn=conn).clone_disks("labctl-t-seat-01", ["labctl-t-seat-02", "labctl-t-seat-03"])
    assert base == Path("/default/labctl-t-seat-01.base.img")
    found = {name: ET.fromstring(xml) for name, xml in volumes(conn).items()}  # noqa: S314 - the test driver's
    assert set(found) == {"labctl-t-seat-01.base.img", *(f"labctl-t-seat-0{n}.img" for n in (1, 2, 3))}
    assert found["labctl-t-seat-01.base.img"].findtext("target/permissions/mode") == "0444"
    assert found["labctl-t-seat-01.base.img"].find("backingStore/path") is None
    for n in (1, 2, 3):
        seat = found[f"labctl-t-seat-0{n}.img"]
        assert seat.findtext("backingStore/path") == str(base) and seat.findtext("capacity") == str(1024**3)
        assert seat.findtext("target/permissions/mode") == "0600"
    with pytest.raises(LabctlError, match="cloned before"):
        Hypervisor(conn=conn).clone_disks("labctl-t-seat-01", ["labctl-t-seat-02"])


def test_clone_disks_refuses_running_seats_and_disks_outside_a_pool(conn: libvirt.virConnect) -> None:
    disk_domain(conn, "labctl-t-seat-01")
    disk_domain(conn, "labctl-t-seat-02")
    conn.lookupByName("labctl-t-seat-02").create()
    before = volumes(conn)
    with pytest.raises(LabctlError, match="running machines: labctl-t-seat-02") as refused:
        Hypervisor(conn=conn).clone_disks("labctl-t-seat-01", ["labctl-t-seat-02"])
    assert refused.value.hint == "labctl halt them first"
    disk_domain(conn, "labctl-t-seat-03", in_pool=False)
    with pytest.raises(LabctlError, match=r"/elsewhere/labctl-t-seat-03.img\) is in no libvirt storage pool") as lost:
        Hypervisor(conn=conn).clone_disks("labctl-t-seat-01", ["labctl-t-seat-03"])
    assert "virsh pool-define-as" in (lost.value.hint or "")
    assert volumes(conn) == before


def test_a_base_that_does_not_fit_loses_nothing(conn: libvirt.virConnect) -> None:
    """The copy into the base fails (the test driver's pool holds 100 GiB; the template takes 60): the
    template's disk and the clone's stay as they were, no half base is left, and the error is labctl's."""
    disk_domain(conn, "labctl-t-seat-01", gib=60)
    disk_domain(conn, "labctl-t-seat-02")
    before = volumes(conn)
    with pytest.raises(LabctlError, match="libvirt failed"):
        Hypervisor(conn=conn).clone_disks("labctl-t-seat-01", ["labctl-t-seat-02"])
    assert volumes(conn) == before


def test_volume_xml_escapes_what_it_is_given() -> None:
    import xml.etree.ElementTree as ET

    from labctl.adapters.hypervisor.storage import volume_xml

    root = ET.fromstring(volume_xml("a<b>&'c\"", 5, mode=0o600, backing="/x/<y>.img"))  # noqa: S314 - ours
    assert root.findtext("name") == "a<b>&'c\"" and root.findtext("backingStore/path") == "/x/<y>.img"
    assert root.findtext("target/permissions/mode") == "0600" and root.findtext("capacity") == "5"


def test_a_classs_base_is_found_by_name_in_any_pool(conn: libvirt.virConnect) -> None:
    pool = conn.storagePoolLookupByName("default")
    pool.createXML(VOLUME_XML.format(name="labctl-c-seat-01.base.img"), 0)
    found = Hypervisor(conn=conn).base_named("labctl-c-seat-01.base.img")
    assert found is not None and found.name == "labctl-c-seat-01.base.img"
    assert Hypervisor(conn=conn).base_named("labctl-d-seat-01.base.img") is None


def test_a_card_is_at_its_newest_lease_not_at_the_one_it_left_behind() -> None:
    # A seat made anew from its class's base asks DHCP under another client id: libvirt keeps the
    # lease of its first boot (listed first) for an hour, and nothing answers there any more.
    from labctl.adapters.hypervisor.leases import newest

    v4, v6 = libvirt.VIR_IP_ADDR_TYPE_IPV4, libvirt.VIR_IP_ADDR_TYPE_IPV6
    first = {"type": v4, "ipaddr": "192.168.121.252", "expirytime": 1_800_000_000, "clientid": "ff:aa"}
    again = {"type": v4, "ipaddr": "192.168.121.77", "expirytime": 1_800_000_900, "clientid": "01:52:54"}
    assert newest([first, again]) == newest([again, first]) == "192.168.121.77"
    assert newest([again, {"type": v4, "ipaddr": "192.168.121.9", "expirytime": 0}]) == "192.168.121.9"  # never expires
    assert newest([{"type": v6, "ipaddr": "fd00::5", "expirytime": 1_900_000_000}, first]) == "192.168.121.252"
    assert newest([{"type": v4, "expirytime": 5}, {"type": v4, "ipaddr": None}]) is None
    assert newest([]) is None


def test_a_driver_without_lease_lists_gives_its_own_addresses() -> None:
    from labctl.adapters.hypervisor import leases

    conn = hypervisor.connect("test:///default")  # cannot list a network's leases (VIR_ERR_NO_SUPPORT)
    dom = conn.lookupByName("test")
    assert leases.current(dom) == {i["hwaddr"]: i["addrs"][0]["addr"] for i in dom.interfaceAddresses(0).values()}


def test_a_stacked_disk_is_kept_as_an_image_that_outlives_its_machine(conn: libvirt.virConnect) -> None:
    """keep_image copies a shut-off machine's disk into a read-only volume of its pool, the machine's own
    disk untouched; a later machine made an overlay on it stands on it: the image cannot be removed
    under it, and can once that machine is gone. Every disk's chain goes down to its box's volume."""
    from labctl.adapters.hypervisor.storage import volume_xml

    hv = Hypervisor(conn=conn)
    pool = conn.storagePoolLookupByName("default")
    pool.createXML(VOLUME_XML.format(name="box_image_12.0.1.img"), 0)
    pool.createXML(volume_xml("labctl-a-devstack.img", 1024**3, mode=0o600, backing="/default/box_image_12.0.1.img"), 0)
    conn.defineXML("<domain type='test'><name>labctl-a-devstack</name><memory unit='MiB'>64</memory><os><type>hvm"
                   "</type></os><devices><disk type='file' device='disk'>"
                   "<source file='/default/labctl-a-devstack.img'/><target dev='vda'/></disk></devices></domain>")
    assert hv.disk_origin("labctl-a-devstack") == "box_image_12.0.1.img"
    conn.lookupByName("labctl-a-devstack").create()
    with pytest.raises(LabctlError, match="while it runs"):
        hv.keep_image("labctl-a-devstack", "labctl-image.0123456789abcdef.img")
    conn.lookupByName("labctl-a-devstack").destroy()
    before = volumes(conn)["labctl-a-devstack.img"]

    path, size = hv.keep_image("labctl-a-devstack", "labctl-image.0123456789abcdef.img")

    assert path == Path("/default/labctl-image.0123456789abcdef.img") and size >= 0
    assert volumes(conn)["labctl-a-devstack.img"] == before  # the machine keeps its own disk
    import xml.etree.ElementTree as ET

    image = ET.fromstring(volumes(conn)["labctl-image.0123456789abcdef.img"])  # noqa: S314 - the test driver's
    assert image.findtext("target/permissions/mode") == "0444" and image.find("backingStore/path") is None
    assert hv.image_users(path) == []
    disk_domain(conn, "labctl-b-devstack")
    hv.overlay_disks(path, ["labctl-b-devstack"])
    assert hv.image_users(path) == ["labctl-b-devstack"] and hv.disk_origin("labctl-b-devstack") == path.name
    with pytest.raises(LabctlError, match="the disk under labctl-b-devstack"):
        hv.remove_image(path)
    conn.lookupByName("labctl-b-devstack").undefine()
    assert hv.remove_image(path) is True and "labctl-image.0123456789abcdef.img" not in volumes(conn)
    assert hv.remove_image(path) is False


def test_a_machine_made_straight_from_an_image_gets_an_overlay_volume_before_it_exists(
        conn: libvirt.virConnect) -> None:
    """image_overlay makes the volume Vagrant creates a box-less machine on: backed by the image, the
    machine then stands on the image. A leftover of that name (an up that stopped before Vagrant made
    the machine) is replaced; a machine's disk of that name is never."""
    hv = Hypervisor(conn=conn)
    pool = conn.storagePoolLookupByName("default")
    pool.createXML(VOLUME_XML.format(name="labctl-image.0123456789abcdef.img"), 0)
    image = Path("/default/labctl-image.0123456789abcdef.img")
    pool.createXML(VOLUME_XML.format(name="labctl-b-ks.img"), 0)  # a leftover
    path = hv.image_overlay(image, "labctl-b-ks.img")
    import xml.etree.ElementTree as ET

    made = ET.fromstring(volumes(conn)["labctl-b-ks.img"])  # noqa: S314 - the test driver's
    assert path == Path("/default/labctl-b-ks.img") and made.findtext("backingStore/path") == str(image)
    assert made.findtext("target/permissions/mode") == "0600"
    conn.defineXML("<domain type='test'><name>labctl-b-ks</name><memory unit='MiB'>64</memory><os><type>hvm"
                   "</type></os><devices><disk type='file' device='disk'>"
                   "<source file='/default/labctl-b-ks.img'/><target dev='vda'/></disk></devices></domain>")
    assert hv.image_users(image) == ["labctl-b-ks"] and hv.disk_origin("labctl-b-ks") == image.name
    with pytest.raises(LabctlError, match="is the disk of labctl-b-ks already"):
        hv.image_overlay(image, "labctl-b-ks.img")
    assert "labctl-b-ks.img" in volumes(conn)


def test_no_lab_name_reaches_an_image_on_destroy(conn: libvirt.virConnect) -> None:
    # A lab folder from a stranger: lab "image", machine named like an image's digest. Its destroy
    # removes its own disk, never the image other labs' machines stand on.
    from labctl.images.store import volume_name

    pool = conn.storagePoolLookupByName("default")
    image = volume_name("0123456789abcdef")
    for vol in (image, "labctl-image-0123456789abcdef.img"):
        pool.createXML(VOLUME_XML.format(name=vol), 0)
    Hypervisor(conn=conn).remove_leftovers(["labctl-image-0123456789abcdef"], "labctl-image")
    assert image in pool.listVolumes() and "labctl-image-0123456789abcdef.img" not in pool.listVolumes()


def test_a_new_disk_is_waited_for_until_it_asked_dhcp() -> None:
    # Before: the lease the box's boot left (listed until it expires); a copy of a stacked disk asks
    # again under another client id. Its address is the new lease's, once there is one.
    from labctl.stacking.clone_hosts import renewed

    before = {"52:54:00:a3:e4:88": 1_800_003_678.0}
    assert not renewed(before, before)
    assert not renewed(before, {})
    assert renewed(before, {"52:54:00:a3:e4:88": 1_800_003_725.0})
    assert renewed({}, {"52:54:00:a3:e4:88": 1_800_003_725.0})  # its first lease
    assert renewed(before, {"52:54:00:a3:e4:88": float("inf")})
    assert renewed(None, None) and renewed(before, None)  # a driver without lease lists: nothing to wait for


def test_lease_expiries_without_lease_lists_are_none(conn: libvirt.virConnect) -> None:
    define(conn, "labctl-t-a")
    assert Hypervisor(conn=conn).lease_expiries("labctl-t-a") is None
    assert Hypervisor(conn=conn).lease_expiries("labctl-t-missing") == {}
