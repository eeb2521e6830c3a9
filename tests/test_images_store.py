"""The host's stacked images as labctl knows them (labctl.images.store, labctl.images.manage), and
which labs use them (labctl.stacking.images.images_apply): records on disk, libvirt's test driver for
the volumes."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import libvirt
import pytest
from test_hypervisor import NODE_XML

from labctl.adapters import hypervisor
from labctl.adapters.hypervisor import Hypervisor
from labctl.adapters.hypervisor.storage import volume_xml
from labctl.errors import LabctlError
from labctl.images.key import StackKey
from labctl.images.manage import listed, orphans, prune, remove
from labctl.images.store import Image, ImageStore, nearest, to_prune, volume_name
from labctl.passwords import Passwords


def image(parts: dict[str, str], **fields: object) -> Image:
    key = StackKey(parts)
    base = {"digest": key.digest, "volume": f"/default/{volume_name(key.digest)}", "lab": "a", "machine": "dev1",
            "hostname": "dev1", "ip": "192.168.150.10", "user": "vagrant", "created": 1000.0, "parts": parts}
    return Image(**{**base, **fields})  # type: ignore[arg-type]


def saved(store: ImageStore, tmp_path: Path, parts: dict[str, str], **fields: object) -> Image:
    key_file = tmp_path / "private_key"
    key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")
    made = image(parts, **fields)
    store.save(made, Passwords.generate(), key_file)
    return made


def test_an_image_is_kept_with_its_passwords_and_key_and_read_back(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    made = saved(store, tmp_path, {"box": "b 1", "local.conf": "A=1"})
    assert store.get(made.digest) == made and store.all() == [made]
    folder = store.folder(made.digest)
    for name in ("secrets.json", "key", "image.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert store.secrets(made).admin and store.key_file(made).read_text().startswith("-----BEGIN")
    used = store.used(made)
    assert (used.uses, store.get(made.digest)) == (1, used) and used.last_used > 0


def test_an_image_record_that_was_tampered_with_is_no_image(tmp_path: Path) -> None:
    # Its parts no longer give its name (an image of another stack would be taken for this one).
    store = ImageStore(tmp_path / "images")
    made = saved(store, tmp_path, {"box": "b 1", "local.conf": "A=1"})
    record = store.folder(made.digest) / "image.json"
    raw = json.loads(record.read_text())
    record.write_text(json.dumps({**raw, "parts": {"box": "b 1", "local.conf": "A=2"}}))
    assert store.get(made.digest) is None and store.all() == []
    # Its volume changed to a lab's disk: `images rm` would delete that.
    record.write_text(json.dumps({**raw, "volume": "/var/lib/libvirt/images/labctl-a-dev1.img"}))
    assert store.get(made.digest) is None
    record.write_text(json.dumps(raw))
    assert store.get(made.digest) == made
    record.write_text("{not json")
    assert store.get(made.digest) is None
    (store.folder(made.digest) / "secrets.json").write_text("[]")
    with pytest.raises(LabctlError, match="lost its passwords"):
        store.secrets(made)
    for hostile in ("../../etc", "0123456789ABCDEF", "0123", ""):
        with pytest.raises(LabctlError, match="16 hexadecimal digits"):
            store.folder(hostile)
        assert store.get(hostile) is None


def test_the_nearest_image_and_what_prune_takes() -> None:
    old = image({"box": "b 1", "local.conf": "A=1"}, created=100.0, size=10)
    recent = image({"box": "b 1", "local.conf": "A=2", "repo x": "c"}, created=100.0, last_used=900.0, size=10)
    newest = image({"box": "b 2"}, created=950.0, size=10)
    assert nearest([old, recent, newest], StackKey({"box": "b 1", "local.conf": "A=3"})) == old
    assert nearest([], StackKey({})) is None
    assert to_prune([old, recent, newest], 1000.0, 500, None) == [old]
    assert to_prune([old, recent, newest], 1000.0, None, 20) == [old]
    assert to_prune([old, recent, newest], 1000.0, None, 0) == [old, recent, newest]
    assert to_prune([old, recent, newest], 1000.0, None, None) == []


@pytest.fixture
def conn(tmp_path: Path) -> libvirt.virConnect:
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    return hypervisor.connect(f"test://{node}")


def test_an_image_under_a_machine_is_never_removed(conn: libvirt.virConnect, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    under = saved(store, tmp_path, {"box": "b 1"}, size=5)
    free = saved(store, tmp_path, {"box": "b 2"}, size=5)
    pool = conn.storagePoolLookupByName("default")
    for made in (under, free):
        pool.createXML(volume_xml(volume_name(made.digest), 1024**2, mode=0o444), 0)
    pool.createXML(volume_xml("labctl-b-dev1.img", 1024**2, mode=0o600, backing=under.volume), 0)
    conn.defineXML("<domain type='test'><name>labctl-b-dev1</name><memory unit='MiB'>64</memory><os><type>hvm</type>"
                   "</os><devices><disk type='file' device='disk'><source file='/default/labctl-b-dev1.img'/>"
                   "<target dev='vda'/></disk></devices></domain>")
    hv = Hypervisor(conn=conn)
    assert {s.image.digest: s.users for s in listed(store, hv)} == {under.digest: ("labctl-b-dev1",), free.digest: ()}
    with pytest.raises(LabctlError, match="the disk under labctl-b-dev1"):
        remove(store, hv, [free.digest, under.digest])
    assert store.get(free.digest) is not None  # refused whole: nothing removed
    with pytest.raises(LabctlError, match="no image 'ffffffffffffffff'"):
        remove(store, hv, ["ffffffffffffffff"])
    assert prune(store, hv, None, 0) == ([free.digest], [under.digest])
    assert volume_name(free.digest) not in pool.listVolumes() and volume_name(under.digest) in pool.listVolumes()
    assert [i.digest for i in store.all()] == [under.digest]


def test_an_image_volume_whose_keep_was_cut_short_is_an_orphan_listed_and_removed(conn: libvirt.virConnect,
                                                                                   tmp_path: Path) -> None:
    """A keep killed between libvirt's copy and its record leaves a volume no machine can be made from,
    and its marker: listed, removed by `rm` and by any `prune`. Never one being kept now, one a newer
    labctl recorded, one under a machine, one another $LABCTL_HOME made (no marker of this home's), or a
    volume whose name labctl does not give."""
    store = ImageStore(tmp_path / "images")
    kept = saved(store, tmp_path, {"box": "b 1"}, created=time.time())
    pool = conn.storagePoolLookupByName("default")
    cut, keeping, newer, under, theirs = "0" * 16, "1" * 16, "2" * 16, "3" * 16, "4" * 16
    for name in (volume_name(d) for d in (kept.digest, cut, keeping, newer, under, theirs)):
        pool.createXML(volume_xml(name, 1024**2, mode=0o444), 0)
    pool.createXML(volume_xml("labctl-image.not-a-digest.img", 1024**2, mode=0o444), 0)
    pool.createXML(volume_xml("labctl-b-dev1.img", 1024**2, mode=0o600, backing=f"/default/{volume_name(under)}"), 0)
    conn.defineXML("<domain type='test'><name>labctl-b-dev1</name><memory unit='MiB'>64</memory><os><type>hvm</type>"
                   "</os><devices><disk type='file' device='disk'><source file='/default/labctl-b-dev1.img'/>"
                   "<target dev='vda'/></disk></devices></domain>")
    for digest in (cut, under, newer):  # a labctl that died while keeping them (no such pid)
        store.folder(digest).mkdir(parents=True)
        (store.folder(digest) / "keeping").write_text("999999999\n")
    (store.folder(newer) / "image.json").write_text('{"format": 9, "digest": "' + newer + '", "new_field": 1}')
    hv = Hypervisor(conn=conn)
    with store.keeping(keeping):
        left = orphans(store, hv)
        assert [(o.digest, o.users) for o in left] == [(cut, ()), (under, ("labctl-b-dev1",))]
        assert left[0].path == Path(f"/default/{volume_name(cut)}") and left[0].size >= 0
        assert prune(store, hv, 365, None) == ([cut], [])  # the old-enough criterion chose nothing else
        assert volume_name(keeping) in pool.listVolumes()
    assert not (store.folder(keeping) / "keeping").exists()  # a keep that ended leaves no marker
    assert [o.digest for o in orphans(store, hv)] == [under]
    with pytest.raises(LabctlError, match="the disk under labctl-b-dev1"):
        remove(store, hv, [under])
    with pytest.raises(LabctlError, match=f"no image '{theirs}'"):
        remove(store, hv, [theirs])  # another home's
    conn.lookupByName("labctl-b-dev1").undefine()
    assert remove(store, hv, [under]) == [under] and not store.folder(under).exists()
    assert {*pool.listVolumes()} >= {volume_name(d) for d in (kept.digest, newer, keeping, theirs)}
    assert "labctl-image.not-a-digest.img" in pool.listVolumes()
    assert {volume_name(cut), volume_name(under)}.isdisjoint(pool.listVolumes()) and store.get(kept.digest) == kept


def test_a_keep_by_a_labctl_that_died_is_no_keep(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    store.folder("4" * 16).mkdir(parents=True)
    (store.folder("4" * 16) / "keeping").write_text("999999999\n")  # above any pid_max: no such process
    assert not store.being_kept("4" * 16)
    (store.folder("4" * 16) / "keeping").write_text("garbage")
    assert not store.being_kept("4" * 16)
    assert not store.being_kept("5" * 16)


def test_only_a_lab_of_one_machine_uses_images() -> None:
    from labctl.catalog import default_catalog
    from labctl.labfile import lab_from_dict
    from labctl.stacking.images import images_apply
    from labctl.stacking.request import StackRequest

    store = ImageStore(Path("/nonexistent"))
    one = lab_from_dict({"name": "a", "machines": [{"name": "dev1"}]}, default_catalog())
    two = lab_from_dict({"name": "b", "machines": [{"name": "ctl", "role": "controller"},
                                                   {"name": "cpu1", "role": "compute"}]}, default_catalog())
    classroom = lab_from_dict({"name": "c", "classroom": {"seats": 1}}, default_catalog())
    assert images_apply(one, ["dev1"], StackRequest(images=store))
    assert not images_apply(one, ["dev1"], StackRequest())  # labctl stack: never from an image
    assert not images_apply(one, ["dev1"], StackRequest(images=store, clean=True))
    assert not images_apply(one, [], StackRequest(images=store))  # stacked fine already
    assert not images_apply(two, ["ctl", "cpu1"], StackRequest(images=store))
    assert not images_apply(classroom, [m.name for m in classroom.machines], StackRequest(images=store))


def test_a_machine_cut_short_on_an_image_is_made_again_from_it_and_never_stacked() -> None:
    """An up cut short while a machine (or a class's template) was being made from an image: made again
    from that image; if the image is gone or --fresh asks for stack.sh, a one-line error with the way out,
    since stack.sh never runs on a copy of another machine's stacked disk."""
    from labctl.catalog import default_catalog
    from labctl.labfile import lab_from_dict
    from labctl.stacking.images import cut_short

    lab = lab_from_dict({"name": "a", "machines": [{"name": "dev1"}]}, default_catalog())
    made = image({"box": "b"})
    origin = f"labctl-image.{made.digest}.img"
    assert cut_short(lab, "dev1", origin, made, fresh=False) is made
    with pytest.raises(LabctlError) as gone:
        cut_short(lab, "dev1", origin, None, fresh=False)
    assert "that image is gone" in gone.value.message and origin in gone.value.message
    assert gone.value.hint == "labctl destroy --lab a, then labctl up"
    with pytest.raises(LabctlError) as fresh:
        cut_short(lab, "dev1", origin, made, fresh=True)
    assert "--fresh asks for stack.sh" in fresh.value.message
    assert fresh.value.hint == "labctl destroy --lab a, then labctl up --fresh"
