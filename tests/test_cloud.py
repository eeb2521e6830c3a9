"""lab.yaml's day-one resources (labctl.cloud): the section's validation, and the script that makes
them, run here against a stand-in `openstack` (tests/fake_openstack.py says why). The real clients
and a real cloud are tested by the compute DevStack test (marker devstack_compute)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from labctl.cloud.dayone import Outcome, parse_outcomes
from labctl.cloud.guest import DAY_ONE_SCRIPT, HEALTH_SCRIPT
from labctl.cloud.spec import CloudSpec, Keypair, Rule, parse_cloud
from labctl.errors import LabFileError
from labctl.labfile import lab_from_dict


def lab_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "lab"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "vmlinuz").write_bytes(b"kernel bytes")
    (folder / "images" / "initrd").write_bytes(b"initrd bytes")
    (folder / "images" / "root.img").write_bytes(b"root bytes")
    return folder


CLOUD = {
    "images": [
        {"name": "tiny-kernel", "file": "images/vmlinuz", "disk_format": "aki", "container_format": "aki"},
        {"name": "tiny-ramdisk", "file": "images/initrd", "disk_format": "ari", "container_format": "ari"},
        {"name": "tiny", "file": "images/root.img", "disk_format": "ami", "container_format": "ami",
         "kernel": "tiny-kernel", "ramdisk": "tiny-ramdisk", "properties": {"hw_rng_model": "virtio", "os_distro": 12}},
    ],
    "flavors": [{"name": "m1.nano", "ram": 128, "disk": 1, "vcpus": 1}],
    "keypair": "labctl",
    "security_group_rules": ["ssh", "icmp", "tcp/8080", "ssh"],
}


def test_a_cloud_section_is_read(tmp_path: Path) -> None:
    folder = lab_folder(tmp_path)
    spec = parse_cloud(CLOUD, folder)
    assert [i.name for i in spec.images] == ["tiny-kernel", "tiny-ramdisk", "tiny"]
    assert spec.images[0].file == (folder / "images" / "vmlinuz").resolve()
    assert spec.images[2].kernel == "tiny-kernel" and dict(spec.images[2].properties)["os_distro"] == "12"
    assert spec.keypair == Keypair("labctl") and spec.rules == (Rule("tcp", 22), Rule("icmp"), Rule("tcp", 8080))
    assert not parse_cloud(None, folder) and spec
    lab = lab_from_dict({"name": "c", "machines": [{"name": "aio"}], "cloud": CLOUD}, _catalog(),
                        source=folder / "lab.yaml")
    assert lab.cloud == spec


def _catalog() -> Any:
    from labctl.catalog import default_catalog

    return default_catalog()


@pytest.mark.parametrize(("cloud", "error"), [
    ({"images": [{"name": "x", "file": "images/nope.img", "disk_format": "qcow2"}]},
     r"cloud.images\[0\].file: no image file .*nope.img"),
    ({"images": [{"name": "x", "file": "../outside.img", "disk_format": "qcow2"}]}, "outside the lab's folder"),
    ({"images": [{"name": "x", "file": "/etc/passwd", "disk_format": "raw"}]}, "outside the lab's folder"),
    ({"images": [{"name": "x", "file": "images/link", "disk_format": "raw"}]}, "outside the lab's folder"),
    ({"images": [{"name": "x", "url": "file:///etc/passwd", "disk_format": "raw"}]}, "http:// or https:// URL"),
    ({"images": [{"name": "x", "url": "http://a/b c", "disk_format": "raw"}]}, "http:// or https:// URL"),
    ({"images": [{"name": "x", "disk_format": "raw"}]}, "give file: .* or url:"),
    ({"images": [{"name": "x", "file": "images/vmlinuz", "url": "http://a/b", "disk_format": "raw"}]}, "one of them"),
    ({"images": [{"name": "x", "file": "images/vmlinuz", "disk_format": "exe"}]}, "disk_format: expected one of"),
    ({"images": [{"name": "x", "file": "images/vmlinuz", "disk_format": "ami", "kernel": "k"}]},
     "'k' is no image listed before this one"),
    ({"images": [{"name": "k", "file": "images/vmlinuz", "disk_format": "raw"},
                 {"name": "x", "file": "images/vmlinuz", "disk_format": "ami", "kernel": "k"}]},
     "whose disk_format is raw, not aki"),
    ({"images": [{"name": "x", "file": "images/vmlinuz", "disk_format": "raw", "properties": {"kernel_id": "1"}}]},
     "set by labctl"),
    ({"images": [{"name": "x", "file": "images/vmlinuz", "disk_format": "raw", "properties": {"a": "b\nc"}}]},
     "one line"),
    ({"images": [{"name": "-rf", "file": "images/vmlinuz", "disk_format": "raw"}]}, "expected a name"),
    ({"images": [{"name": "x", "file": "images/vmlinuz", "disk_format": "raw"}] * 2}, "listed twice"),
    ({"flavors": [{"name": "f", "ram": "lots"}]}, r"cloud.flavors\[0\].ram: expected a whole number"),
    ({"flavors": [{"name": "f", "ram": 64, "disks": 1}]}, r"cloud.flavors\[0\].disks: unknown key"),
    ({"keypair": "mine"}, "expected `labctl` or"),
    ({"keypair": {"name": "k", "public_key": "ssh-ed25519 AAAA\nssh-rsa BBBB"}}, "one OpenSSH public key line"),
    ({"security_group_rules": ["telnet"]}, "tcp/PORT or udp/PORT"),
    ({"security_group_rules": ["tcp/70000"]}, "tcp/PORT or udp/PORT"),
    ({"image": []}, "cloud.image: unknown key"),
])
def test_bad_cloud_sections_are_one_clear_line(tmp_path: Path, cloud: dict[str, Any], error: str) -> None:
    folder = lab_folder(tmp_path)
    (folder / "images" / "link").symlink_to("/etc/hostname")  # a link out of the folder is outside it
    with pytest.raises(LabFileError, match=error):
        parse_cloud(cloud, folder)


# ---------------------------------------------------------------------------------------------
# The script, against tests/fake_openstack.py


class FakeKeystone(BaseHTTPRequestHandler):
    """Keystone's token request as the health script makes it, on loopback: a real HTTP server (the
    script's own urllib, timeouts and errors run); 201 with the cloud's catalog for admin's password
    in the default domain, 401 for anything else, 500 while `broken`."""
    state: Path
    broken = False
    asked: list[dict[str, Any]]  # each fixture's own

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).asked.append(body)
        if self.path != "/identity/v3/auth/tokens" or type(self).broken:
            self.send_response(500 if type(self).broken else 404)
            self.end_headers()
            return
        user = body["auth"]["identity"]["password"]["user"]
        project = body["auth"]["scope"]["project"]
        good = (user == {"name": "admin", "password": "adm1n-secret", "domain": {"id": "default"}}
                and project == {"name": "admin", "domain": {"id": "default"}})
        # The stand-in client's cloud (tests/fake_openstack.py), its first catalog until it saved one.
        catalog = (json.loads(self.state.read_text())["catalog"] if self.state.exists()
                   else ["identity", "compute", "network", "image"])
        answer = json.dumps({"token": {"catalog": [{"type": t, "name": t, "endpoints": []} for t in catalog]}})
        self.send_response(201 if good else 401)
        self.send_header("X-Subject-Token", "gAAAA-token")
        self.end_headers()
        self.wfile.write(answer.encode() if good else b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def keystone(tmp_path: Path) -> Iterator[type[FakeKeystone]]:
    handler = type("Keystone", (FakeKeystone,), {"state": tmp_path / "machine" / "cloud.json", "asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/identity"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A CA-signed-itself certificate for 127.0.0.1, as DevStack's tls-proxy makes its own: (cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "ca.pem", folder / "ca.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def keystone_tls(tmp_path: Path, keystone: Any) -> Iterator[tuple[str, Path]]:
    """The same Keystone behind HTTPS with a CA of its own: (its URL, the CA's certificate)."""
    import ssl

    cert, key = self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), keystone)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/identity", cert
    server.shutdown()
    server.server_close()


class Cloud:
    """A machine as the script sees it: DevStack's openrc, the stack user's home, `sudo` and `openstack`."""

    def __init__(self, tmp_path: Path, auth_url: str = "http://10.0.0.1/identity") -> None:
        self.root = tmp_path / "machine"
        self.devstack = self.root / "devstack"
        self.devstack.mkdir(parents=True)
        (self.devstack / "openrc").write_text(f'export OS_AUTH_URL={auth_url}\n'
                                              'export OS_USERNAME="$1" OS_PROJECT_NAME="$2"\n'
                                              'export OS_PASSWORD=adm1n-secret OS_USER_DOMAIN_ID=default\n'
                                              'export OS_PROJECT_DOMAIN_ID=default\n')
        self.home = self.root / "stack"
        self.home.mkdir()
        bin_dir = self.root / "bin"
        bin_dir.mkdir()
        (bin_dir / "openstack").symlink_to(REPO / "tests" / "fake_openstack.py")
        # sudo -u stack -H CMD...: here, CMD as this user (the test runs as one user).
        (bin_dir / "sudo").write_text('#!/bin/sh\nwhile [ "$1" = -u ] || [ "$1" = -H ]; do\n'
                                      '  [ "$1" = -u ] && shift; shift\ndone\nexec "$@"\n')
        (bin_dir / "sudo").chmod(0o755)
        self.state = self.root / "cloud.json"
        # A proxy in the machine's environment (labctl's caches): never for its own Keystone.
        self.env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_OS_STATE": str(self.state), "HOME": str(self.home),
                    "http_proxy": "http://127.0.0.1:9"}

    def run(self, spec: CloudSpec, fail: str = "", script_text: str = DAY_ONE_SCRIPT,
            extra: dict[str, object] | None = None) -> tuple[int, list[Outcome]]:
        told: dict[str, Any] = {**spec.as_json(), **(extra or {})}
        for image, raw in zip(spec.images, told["images"], strict=True):
            if image.file:  # as the host uploads it: a copy the script deletes
                copy = self.root / f"upload-{image.name}"
                copy.write_bytes(image.file.read_bytes())
                raw["file"] = str(copy)
        told.update(devstack=str(self.devstack), stack_home=str(self.home))
        spec_file = self.root / "spec.json"
        spec_file.write_text(json.dumps(told))
        script = self.root / "day_one.py"
        script.write_text(script_text)
        proc = subprocess.run([sys.executable, str(script), str(spec_file)], capture_output=True, text=True,
                              env={**self.env, **({"FAKE_OS_FAIL": fail} if fail else {})}, timeout=120)
        assert not spec_file.exists()  # deleted at once: it may hold nothing secret, but no trace is left
        assert proc.returncode in (0, 3), proc.stderr
        outcomes = parse_outcomes(proc.stdout)
        assert (proc.returncode == 3) == any(o.failed for o in outcomes)
        assert not list(self.root.glob("upload-*"))  # every uploaded image file removed
        return proc.returncode, outcomes

    @property
    def cloud(self) -> dict[str, Any]:
        return dict(json.loads(self.state.read_text()))


def states(outcomes: list[Outcome]) -> dict[str, str]:
    return {f"{o.kind} {o.name}": o.state for o in outcomes}


def test_day_one_resources_are_made_once(tmp_path: Path) -> None:
    machine = Cloud(tmp_path)
    spec = parse_cloud(CLOUD, lab_folder(tmp_path))
    code, outcomes = machine.run(spec)
    assert code == 0 and set(states(outcomes).values()) == {"created"}
    assert list(states(outcomes)) == [
        "image tiny-kernel", "image tiny-ramdisk", "image tiny", "flavor m1.nano", "keypair labctl",
        "rule admin/default tcp/22", "rule admin/default icmp", "rule admin/default tcp/8080",
        "rule demo/default tcp/22", "rule demo/default icmp", "rule demo/default tcp/8080"]
    cloud = machine.cloud
    images = {i["Name"]: i for i in cloud["images"]}
    assert images["tiny"]["properties"] == {"kernel_id": images["tiny-kernel"]["ID"],
                                            "ramdisk_id": images["tiny-ramdisk"]["ID"],
                                            "hw_rng_model": "virtio", "os_distro": "12"}
    assert images["tiny"]["bytes"] == "root bytes" and images["tiny"]["public"]
    assert (images["tiny-kernel"]["disk_format"], images["tiny-kernel"]["container_format"]) == ("aki", "aki")
    assert cloud["flavors"]["m1.nano"] == {"ram": 128, "disk": 1, "vcpus": 1}
    # labctl's keypair: the stack user's own key, made in the machine (servers are reached from there).
    own = (machine.home / ".ssh" / "id_ed25519.pub").read_text().strip()
    assert cloud["keypairs"]["labctl"] == own
    assert (machine.home / ".ssh" / "id_ed25519").stat().st_mode & 0o077 == 0
    assert {(r["IP Protocol"], r["Port Range"]) for r in cloud["rules"]["sg-p-admin"]} == {
        ("tcp", "22:22"), ("icmp", ""), ("tcp", "8080:8080")}

    # A retry makes nothing twice.
    code, again = machine.run(spec)
    assert code == 0 and set(states(again).values()) == {"present"}
    assert len(machine.cloud["images"]) == 3 and len(machine.cloud["rules"]["sg-p-demo"]) == 3


def test_nothing_half_made_is_left_and_one_failure_stops_nothing_else(tmp_path: Path) -> None:
    machine = Cloud(tmp_path)
    spec = parse_cloud(CLOUD, lab_folder(tmp_path))
    code, outcomes = machine.run(spec, fail="image create tiny-ramdisk")
    by = states(outcomes)
    assert code == 3 and by["image tiny-ramdisk"] == "failed" and by["image tiny-kernel"] == "created"
    assert "the upload broke" in next(o.detail for o in outcomes if o.name == "tiny-ramdisk")
    assert by["image tiny"] == "failed"  # its ramdisk is missing: said, not guessed
    assert "ramdisk image tiny-ramdisk was not made" in next(o.detail for o in outcomes if o.name == "tiny")
    assert by["flavor m1.nano"] == "created" and by["keypair labctl"] == "created"
    assert [i["Name"] for i in machine.cloud["images"]] == ["tiny-kernel"]  # the queued one deleted

    # A try killed while uploading leaves a queued image: the next run makes it anew.
    cloud = machine.cloud
    cloud["images"].append({"ID": "stale", "Name": "tiny-ramdisk", "Status": "saving", "properties": {}})
    machine.state.write_text(json.dumps(cloud))
    code, outcomes = machine.run(spec)
    assert code == 0
    by = states(outcomes)
    assert (by["image tiny-kernel"], by["image tiny-ramdisk"], by["image tiny"]) == ("present", "replaced", "created")
    assert sorted((i["Name"], i["Status"]) for i in machine.cloud["images"]) == [
        ("tiny", "active"), ("tiny-kernel", "active"), ("tiny-ramdisk", "active")]


def test_what_exists_otherwise_is_named_never_overwritten(tmp_path: Path) -> None:
    machine = Cloud(tmp_path)
    folder = lab_folder(tmp_path)
    given = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGivenKeyGivenKeyGivenKeyGivenKeyGivenKey trainer@laptop"
    spec = parse_cloud({"flavors": [{"name": "m1.nano", "ram": 128, "disk": 1}],
                        "keypair": {"name": "trainer", "public_key": given}}, folder)
    machine.run(spec)
    cloud = machine.cloud
    cloud["flavors"]["m1.nano"]["ram"] = 256  # someone changed them by hand
    cloud["keypairs"]["trainer"] = "ssh-ed25519 AAAAOther other@host"
    machine.state.write_text(json.dumps(cloud))
    code, outcomes = machine.run(spec)
    assert code == 3 and states(outcomes) == {"flavor m1.nano": "failed", "keypair trainer": "failed"}
    assert "ram 256 MiB" in outcomes[0].detail and "openstack flavor delete m1.nano" in outcomes[0].detail
    assert "another public key" in outcomes[1].detail
    assert machine.cloud["keypairs"]["trainer"] == "ssh-ed25519 AAAAOther other@host"


def test_labctls_keypair_follows_the_machines_own_key(tmp_path: Path) -> None:
    """A classroom seat copied from seat-01 has seat-01's keypair in Nova and no key of its own (the
    clone removes the template's): the day-one step makes the seat's key and replaces the keypair."""
    machine = Cloud(tmp_path)
    spec = CloudSpec(keypair=Keypair("labctl"))
    machine.run(spec)
    first = machine.cloud["keypairs"]["labctl"]
    for leftover in (machine.home / ".ssh").glob("id_ed25519*"):
        leftover.unlink()
    code, outcomes = machine.run(spec)
    assert code == 0 and states(outcomes) == {"keypair labctl": "replaced"}
    assert machine.cloud["keypairs"]["labctl"] != first
    assert machine.cloud["keypairs"]["labctl"] == (machine.home / ".ssh" / "id_ed25519.pub").read_text().strip()


def test_a_machine_that_has_not_stacked_is_one_failure(tmp_path: Path) -> None:
    machine = Cloud(tmp_path)
    (machine.devstack / "openrc").unlink()
    code, outcomes = machine.run(CloudSpec(flavors=parse_cloud({"flavors": [{"name": "f", "ram": 64}]}, None).flavors))
    assert code == 3 and [o.line() for o in outcomes] == [
        f"cloud openrc: failed ({machine.devstack}/openrc admin admin gave no credentials: has DevStack stacked?)"]


def test_outcomes_are_read_from_any_output() -> None:
    text = ('noise\n{"kind": "image", "name": "a", "state": "created", "detail": ""}\n{not json\n'
            '{"kind": "image", "name": "b", "state": "exploded", "detail": ""}\n[1]\n'
            '{"kind": "flavor", "name": "f", "state": "failed", "detail": "no"}\n')
    assert parse_outcomes(text) == [Outcome("image", "a", "created"), Outcome("flavor", "f", "failed", "no")]


def test_health_asks_each_service_the_catalog_lists(tmp_path: Path, keystone: Any) -> None:
    machine = Cloud(tmp_path, keystone.url)
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 0 and [(o.name, o.state, o.detail) for o in outcomes] == [
        ("keystone", "ok", "token issued"), ("compute", "ok", "3 services up, 1 compute"),
        ("network", "ok", "2 agents alive"), ("image", "ok", "0 images")]
    # The token over HTTP, past the machine's proxy (never asked), not with a client of its own.
    assert len(keystone.asked) == 1 and not any(c.startswith(("token", "catalog")) for c in machine.cloud["calls"])

    # A keystone-only cloud is asked about Keystone alone; a compute service down is named.
    cloud = machine.cloud
    cloud["catalog"] = ["identity"]
    machine.state.write_text(json.dumps(cloud))
    assert [o.name for o in machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)[1]] == ["keystone"]
    cloud["catalog"] = ["identity", "compute", "network"]
    cloud["services"][2]["State"] = "down"
    cloud["agents"][1]["Alive"] = False
    machine.state.write_text(json.dumps(cloud))
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 3 and [(o.name, o.state, o.detail) for o in outcomes] == [
        ("keystone", "ok", "token issued"), ("compute", "failed", "down: nova-compute on aio"),
        ("network", "failed", "not alive: OVN Metadata agent on aio")]


def test_health_asks_keystone_over_https_trusting_devstacks_own_ca(tmp_path: Path, keystone_tls: Any) -> None:
    url, ca = keystone_tls
    machine = Cloud(tmp_path, url)
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)  # openrc names no CA: refused
    assert code == 3 and "CERTIFICATE_VERIFY_FAILED" in outcomes[0].detail
    with (machine.devstack / "openrc").open("a") as f:
        f.write(f"export OS_CACERT={ca}\n")
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 0 and outcomes[0] == Outcome("health", "keystone", "ok", "token issued")


def test_health_of_a_dead_keystone_stops_at_keystone(tmp_path: Path, keystone: Any) -> None:
    machine = Cloud(tmp_path, keystone.url)
    keystone.broken = True
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 3 and [(o.name, o.state) for o in outcomes] == [("keystone", "failed")]
    assert outcomes[0].detail == ("Keystone answered HTTP 500 Internal Server Error to a token request at"
                                  f" {keystone.url}/v3/auth/tokens")
    keystone.broken = False
    (machine.devstack / "openrc").write_text((machine.devstack / "openrc").read_text().replace("adm1n", "wrong"))
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 3 and "HTTP 401 Unauthorized" in outcomes[0].detail
    (machine.devstack / "openrc").write_text("export OS_AUTH_URL=http://127.0.0.1:9/identity OS_USERNAME=admin\n")
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 3 and outcomes[0].detail.startswith("no token from Keystone at http://127.0.0.1:9/identity/v3/")
    (machine.devstack / "openrc").unlink()
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 3 and outcomes[0].name == "keystone" and "has DevStack stacked?" in outcomes[0].detail


def test_health_of_a_machine_just_booted_waits_for_its_services(tmp_path: Path, keystone: Any) -> None:
    """Seen with the real compute DevStack: its disk kept as an image, the machine booted again, and
    Keystone answered 500 70 s after the boot (its services still starting): the up failed."""
    machine = Cloud(tmp_path, keystone.url)
    def up() -> float:  # the clock the script reads
        return float(Path("/proc/uptime").read_text().split()[0])

    keystone.broken = True
    threading.Timer(1.0, lambda: setattr(keystone, "broken", False)).start()
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT,
                                 extra={"settle": up() + 60, "settle_every": 0.2})
    assert code == 0 and outcomes[0] == Outcome("health", "keystone", "ok", "token issued")
    assert len(keystone.asked) > 1  # asked again while it answered 500

    # Still failing once the machine has been up long enough: failed, after a few more tries.
    keystone.asked.clear()
    keystone.broken = True
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT,
                                 extra={"settle": up() + 1.5, "settle_every": 0.2})
    assert code == 3 and "HTTP 500" in outcomes[0].detail and len(keystone.asked) > 1
    # A refused password is not asked again, even just after a boot (Keystone locks the account out).
    keystone.asked.clear()
    keystone.broken = False
    rc = machine.devstack / "openrc"
    rc.write_text(rc.read_text().replace("adm1n", "wrong"))
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT,
                                 extra={"settle": up() + 60, "settle_every": 0.2})
    assert code == 3 and "HTTP 401" in outcomes[0].detail and len(keystone.asked) == 1
    rc.write_text(rc.read_text().replace("wrong", "adm1n"))
    keystone.broken = True
    # A machine up for long (the default: no window) is asked once.
    keystone.asked.clear()
    code, outcomes = machine.run(CloudSpec(), script_text=HEALTH_SCRIPT)
    assert code == 3 and len(keystone.asked) == 1
