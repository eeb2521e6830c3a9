"""The host's caches for real: apt-cacher-ng and devpi-server started by labctl on this host, fetching
from Debian's archive and PyPI once, serving the second time from disk, serving only what they hold
when started --offline, and saying so when they cannot start. Plus what a machine is given (pure),
the lab file's settings, and the disks of a cloned classroom on the real libvirt."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ports import free_port

from conftest import Result, require_libvirt, require_tool
from labctl.cache.guest import APT_CONF, PIP_CONF, guest_files
from labctl.cache.services import CacheError, Endpoints, HostCaches, apt_log_stats, devpi_log_stats
from labctl.catalog import Catalog
from labctl.errors import LabFileError
from labctl.labfile import lab_from_dict
from labctl.stacking.clone import clone_applies, fixup_spec

# A small package of bookworm's pool, and one that no test fetches first.
DEB = "http://deb.debian.org/debian/pool/main/s/sl/sl_5.02-1+b1_amd64.deb"
UNCACHED_DEB = "http://deb.debian.org/debian/pool/main/c/cowsay/cowsay_3.03+dfsg2-8_all.deb"


def through_apt(ends: Endpoints, url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": ends.apt_proxy}))
    try:
        with opener.open(url, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def pip_download(ends: Endpoints, requirement: str, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PIP_FIND_LINKS", None)
    return subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                           "-i", ends.pypi_index, requirement], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def counts(caches: HostCaches) -> dict[str, Any]:
    return {s.name: s for s in caches.status()}


def counted(caches: HostCaches, name: str, requests: int) -> Any:
    """The cache's counts once its log shows `requests` requests: apt-cacher-ng writes a transfer's
    line when it has finished with it, which can be a moment after the client has the whole file."""
    deadline = time.monotonic() + 10
    while True:
        state = counts(caches)[name]
        if state.requests >= requests or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_caches_fetch_once_serve_from_disk_and_offline(tmp_path: Path, run: Callable[..., Result],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("apt-cacher-ng")
    caches = HostCaches(tmp_path / "cache")
    ports = {"apt_port": free_port(), "pypi_port": free_port()}
    ends = caches.start("127.0.0.1", **ports)
    try:
        pids = (caches.pid("apt"), caches.pid("pypi"))
        assert all(pids)
        # Started again: the same processes, kept.
        assert caches.start("127.0.0.1", **ports) == ends and (caches.pid("apt"), caches.pid("pypi")) == pids

        assert through_apt(ends, DEB) == 200
        first = counted(caches, "apt", 1)
        assert first.requests == 1 and first.hits == 0 and first.fetched_bytes > 10_000
        assert through_apt(ends, DEB) == 200
        second = counted(caches, "apt", 2)
        assert second.requests == 2 and second.hits == 1 and second.fetched_bytes == first.fetched_bytes

        got = pip_download(ends, "six==1.17.0", tmp_path / "dl1")
        assert got.returncode == 0, got.stderr
        pypi = counted(caches, "pypi", 1)
        assert pypi.requests == 1 and pypi.hits == 0 and pypi.fetched_bytes > 5_000
        assert pip_download(ends, "six==1.17.0", tmp_path / "dl2").returncode == 0
        pypi2 = counted(caches, "pypi", 2)
        assert pypi2.requests == 2 and pypi2.hits == 1 and pypi2.fetched_bytes == pypi.fetched_bytes

        # The outside is gone: --offline serves what the caches hold, and fetches nothing else.
        offline = caches.start("127.0.0.1", offline=True, **ports)
        assert offline.offline and caches.pid("apt") != pids[0]
        assert through_apt(offline, DEB) == 200
        assert through_apt(offline, UNCACHED_DEB) >= 500
        assert pip_download(offline, "six==1.17.0", tmp_path / "dl3").returncode == 0
        assert pip_download(offline, "idna==3.10", tmp_path / "dl4").returncode != 0
        after = counts(caches)
        assert after["apt"].fetched_bytes == second.fetched_bytes
        assert after["pypi"].fetched_bytes == pypi2.fetched_bytes

        # `labctl cache stop` stops what every lab shares: never without a yes (here no terminal asks).
        monkeypatch.setenv("LABCTL_CACHE", str(tmp_path / "cache"))
        refused = run("cache", "stop")
        assert refused.code == 2 and "refusing to stop the caches every lab shares" in refused.err
        assert "labctl cache stop -y" in refused.err and caches.pid("apt") and caches.pid("pypi")
        assert run("cache", "stop", "-y").out.strip() == "stopped: apt, pypi"

        # Another program on a cache's port: one line naming it, nothing else stopped.
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", ports["apt_port"]))
            holder.listen()
            with pytest.raises(CacheError) as err:
                caches.start("127.0.0.1", **ports)
            assert f"127.0.0.1:{ports['apt_port']}" in err.value.message and "\n" not in err.value.message
        assert caches.pid("apt") is None and caches.pid("pypi") is None
    finally:
        caches.stop()
    assert caches.pid("apt") is None and caches.pid("pypi") is None and caches.endpoints() is None


class HostOnlyServer:
    """An HTTP server on the host's loopback, which no machine may reach through the caches."""

    def __init__(self) -> None:
        import http.server
        import threading

        asked: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"host only")

            def log_message(self, *_args: object) -> None:
                pass

        self.asked = asked
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def http_call(url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None,
              proxy: str | None = None) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy} if proxy else {}))
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers={  # noqa: S310 - the test's own caches
        "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
    try:
        with opener.open(request, timeout=60) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_caches_trust_no_machine(tmp_path: Path) -> None:
    """Trainees are root in their seats and reach the caches: neither cache lets them in (issue 19)."""
    require_tool("apt-cacher-ng")
    import base64

    caches = HostCaches(tmp_path / "cache")
    ends = caches.start("127.0.0.1", apt_port=free_port(), pypi_port=free_port())
    host_only = HostOnlyServer()
    try:
        # devpi: no root login without the host's password; no user, no index change by anyone else.
        devpi = f"http://127.0.0.1:{ends.pypi_port}"
        assert http_call(f"{devpi}/+login", "POST", {"user": "root", "password": ""}) == 401
        assert http_call(f"{devpi}/+login", "POST", {"user": "root", "password": "root"}) == 401
        assert http_call(f"{devpi}/mallory", "PUT", {"password": "x"}) == 403
        assert http_call(f"{devpi}/root/pypi", "PATCH", ["mirror_url=http://192.0.2.1/simple/"]) == 403
        assert http_call(f"{devpi}/+login", "POST", {"user": "root", "password": caches.password("pypi-root")}) == 200
        # apt-cacher-ng: its maintenance wants the password; nothing but the archives is fetched.
        apt = f"http://127.0.0.1:{ends.apt_port}/acng-report.html?doExpire=Start+Expiration&abortOnErrors=aOe"
        assert http_call(apt) == 401
        admin = base64.b64encode(f"labctl:{caches.password('apt-admin')}".encode()).decode()
        assert http_call(apt, headers={"Authorization": f"Basic {admin}"}) == 200
        for url in (f"http://127.0.0.1:{host_only.port}/pool/main/x.deb", f"http://localhost:{host_only.port}/x.deb"):
            assert http_call(url, proxy=ends.apt_proxy) == 403
        assert host_only.asked == []
        assert through_apt(ends, DEB) == 200  # Debian's archive still is
        # The passwords are the owner's alone.
        assert oct(caches.root.stat().st_mode & 0o777) == "0o700"
        assert oct(caches.secrets_file.stat().st_mode & 0o777) == "0o600"
        # Caches an older labctl started (no "config" in their record) are restarted with all this.
        before = caches.pid("apt")
        record = json.loads(caches.state_file.read_text())
        del record["config"]
        caches.state_file.write_text(json.dumps(record))
        assert caches.start("127.0.0.1", apt_port=ends.apt_port, pypi_port=ends.pypi_port) == ends
        assert caches.pid("apt") not in (None, before)
    finally:
        caches.stop()
        host_only.server.shutdown()
    # Started again: the same passwords (devpi's root keeps it; it is set once per server folder).
    password = caches.password("pypi-root")
    ends = caches.start("127.0.0.1", apt_port=free_port(), pypi_port=free_port())
    try:
        login = {"user": "root", "password": password}
        assert http_call(f"http://127.0.0.1:{ends.pypi_port}/+login", "POST", login) == 200
    finally:
        caches.stop()


def test_a_planted_lock_link_is_refused(tmp_path: Path) -> None:
    from labctl.errors import LabctlError

    victim = tmp_path / "precious"
    victim.write_text("keep me")
    caches = HostCaches(tmp_path / "cache")
    caches.root.mkdir(parents=True)
    (caches.root / ".lock").symlink_to(victim)
    with pytest.raises(LabctlError) as err:
        caches.stop()
    assert "symbolic link" in err.value.message and victim.read_text() == "keep me"


def test_missing_apt_cacher_ng_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # apt-cacher-ng is installed here and cannot be taken away for a test: labctl's lookup is told it is not.
    monkeypatch.setattr("labctl.cache.services.shutil.which", lambda *_a, **_k: None)
    with pytest.raises(CacheError) as err:
        HostCaches(tmp_path).start("127.0.0.1", apt_port=free_port(), pypi_port=free_port())
    assert "apt-cacher-ng is not installed" in err.value.message and "install.sh" in (err.value.hint or "")


def test_statistics_from_the_caches_own_logs(tmp_path: Path) -> None:
    apt = tmp_path / "apt-cacher.log"
    apt.write_text("1795695825|I|13436|192.168.121.5|debrep/pool/main/s/sl/sl_5.02-1+b1_amd64.deb\n"
                   "1795695825|O|13402|192.168.121.5|debrep/pool/main/s/sl/sl_5.02-1+b1_amd64.deb\n"
                   "1795695825|O|13402|192.168.121.6|debrep/pool/main/s/sl/sl_5.02-1+b1_amd64.deb\n"
                   "1795695842|E|640|127.0.0.1|debrep/dists/bookworm/InRelease [HTTP error, code: 503]\n"
                   "garbage|line\n")
    assert apt_log_stats(apt) == (2, 1, 13436)
    assert apt_log_stats(tmp_path / "none.log") == (0, 0, 0)
    devpi = tmp_path / "devpi.log"
    devpi.write_text(
        "2026-11-26 12:22:37,573 INFO  [req1] GET /root/pypi/+simple/six/\n"
        "2026-11-26 12:22:37,589 INFO  [req2] GET /root/pypi/+f/8ab/b2f1d86890a2d/six-1.16.0-py2.py3-none-any.whl\n"
        "2026-11-26 12:22:37,596 INFO  [req2] [Rtx1] reading remote: URL('https://files.pythonhosted.org/packages/"
        "d9/5a/six-1.16.0-py2.py3-none-any.whl'), target"
        " root/pypi/+f/8ab/b2f1d86890a2d/six-1.16.0-py2.py3-none-any.whl\n"
        "2026-11-26 12:22:40,589 INFO  [req3] GET /root/pypi/+f/8ab/b2f1d86890a2d/six-1.16.0-py2.py3-none-any.whl\n")
    assert devpi_log_stats(devpi) == (2, 1)


def test_what_a_machine_is_given() -> None:
    ends = Endpoints("192.168.121.1", 3149, 3148)
    files = guest_files("apt", ends)
    assert 'Acquire::http::Proxy "http://192.168.121.1:3149/";' in files[APT_CONF]
    assert "index-url = http://192.168.121.1:3148/root/pypi/+simple/" in files[PIP_CONF]
    assert "trusted-host = 192.168.121.1" in files[PIP_CONF]
    assert "proxy" not in files[PIP_CONF]  # pip would send even the cache's requests through it
    assert APT_CONF not in guest_files("dnf", ends) and PIP_CONF in guest_files("dnf", ends)


def test_lab_file_settings(catalog: Catalog) -> None:
    base = {"name": "c", "defaults": {"memory": "1G", "cpus": 1, "disk": "10G"}}
    assert not lab_from_dict({**base, "machines": [{"name": "m"}]}, catalog).caches
    assert lab_from_dict({**base, "machines": [{"name": "m"}], "caches": True}, catalog).caches
    classroom = lab_from_dict({**base, "classroom": {"seats": 3}}, catalog)
    assert classroom.caches and classroom.classroom and classroom.classroom.clone
    assert not lab_from_dict({**base, "classroom": {"seats": 3}, "caches": False}, catalog).caches
    for raw, words in (({"caches": "yes"}, "caches: expected true or false"),
                       ({"classroom": {"seats": 2, "clone": 1}}, "classroom.clone: expected true or false")):
        with pytest.raises(LabFileError) as err:
            lab_from_dict({**base, **({"machines": [{"name": "m"}]} if "classroom" not in raw else {}), **raw},
                          catalog)
        assert words in err.value.message


def test_what_a_clone_is_told(catalog: Catalog) -> None:
    lab = lab_from_dict({"name": "c", "network": {"cidr": "192.168.77.0/24"}, "classroom": {"seats": 3}}, catalog)
    from labctl.passwords import Passwords, SeatSecrets

    seats = {f"seat-0{n}": SeatSecrets(*(f"{k}{n}" for k in ("admin", "database", "rabbit", "service", "login")))
             for n in (1, 2, 3)}
    template = Passwords(*(f"{k}-template" for k in ("admin", "database", "rabbit", "service")))
    spec = fixup_spec(lab, "seat-03", seats, template, "vagrant", "ssh-ed25519 AAAA labctl")
    assert spec["old_ip"] == lab.machine("seat-01").ip and spec["new_ip"] == lab.machine("seat-03").ip  # type: ignore[union-attr]
    # The template's passwords become the seat's own; seat-01's are never in the base to begin with.
    assert spec["admin"] == ["admin-template", "admin3"] and ["database-template", "database3"] in spec["secrets"]
    assert all("login" not in pair[0] for pair in spec["secrets"])  # the trainee's goes through chpasswd
    # Every secret of every other seat is looked for in the seat, and none of its own; as salted
    # digests, never as values (a value sent to the seat would be on its disk and in its memory).
    import hashlib

    def digest(spec: dict[str, Any], value: str) -> str:
        return hashlib.sha256((spec["salt"] + value).encode()).hexdigest()

    assert set(spec["forbidden_sha256"]) == {digest(spec, f"{k}{n}") for k in
                                             ("admin", "database", "rabbit", "service", "login") for n in (1, 2)}
    assert not [v for n in (1, 2) for v in seats[f"seat-0{n}"].values() if v in json.dumps(spec)]
    own = fixup_spec(lab, "seat-01", seats, template, "vagrant", "ssh-ed25519 AAAA labctl")
    assert own["old_ip"] == own["new_ip"] and own["admin"] == ["admin-template", "admin1"]
    assert digest(own, "admin1") not in own["forbidden_sha256"] and digest(own, "admin2") in own["forbidden_sha256"]
    assert own["salt"] != spec["salt"]
    assert clone_applies(lab, ["seat-01", "seat-02"]) and not clone_applies(lab, ["seat-02", "seat-03"])
    assert not clone_applies(lab, ["seat-01"])


def test_clone_disks_on_real_libvirt(tmp_path: Path) -> None:
    """Two shut-off domains on the real libvirt (never started), their disks volumes of a pool of their
    own, the template's an overlay on a box as vagrant-libvirt makes it: the base is a flat copy of the
    template's chain, made and read-only through libvirt's volume API, both seats' volumes become
    overlays on it, and the clone reads what the box and the template wrote."""
    require_tool("qemu-img")
    require_tool("qemu-io")
    require_libvirt()
    import libvirt

    from labctl.adapters.hypervisor import Hypervisor

    try:
        hypervisor = Hypervisor.open()
    except Exception as exc:  # libvirtd not running on a developer's machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no libvirtd: {exc}")
    tag = uuid.uuid4().hex[:6]
    folder = tmp_path / "pool"
    folder.mkdir()
    box = folder / "box.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(box), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0xb0 1M 64k", str(box)], check=True, capture_output=True)
    disks = {n: folder / f"labctl-t{tag}-{n}.img" for n in ("seat-01", "seat-02")}
    for path in disks.values():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(box), str(path)],
                       check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 64k", str(disks["seat-01"])], check=True, capture_output=True)
    names = {n: f"labctl-t{tag}-{n}" for n in disks}
    pool = hypervisor.conn.storagePoolCreateXML(
        f"<pool type='dir'><name>labctl-t{tag}</name><target><path>{folder}</path></target></pool>", 0)
    doms = []
    try:
        for n, path in disks.items():
            doms.append(hypervisor.conn.defineXML(
                f"<domain type='qemu'><name>{names[n]}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
                f"<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                f"<source file='{path}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"))
        base = hypervisor.clone_disks(names["seat-01"], [names["seat-02"]])
        assert base == folder / f"labctl-t{tag}-seat-01.base.img" and oct(base.stat().st_mode & 0o777) == "0o444"
        assert "backing-filename" not in qemu_info(base)  # flat: the box is inside, nothing under it
        for path in disks.values():
            assert qemu_info(path)["backing-filename"] == str(base)
        for pattern, where in (("0x5a", "0 64k"), ("0xb0", "1M 64k")):
            read = subprocess.run(["qemu-io", "-r", "-c", f"read -P {pattern} {where}", str(disks["seat-02"])],
                                  capture_output=True, text=True, check=False)
            assert read.returncode == 0 and "Pattern verification failed" not in read.stdout, read.stdout
        with pytest.raises(Exception, match="cloned before"):
            hypervisor.clone_disks(names["seat-01"], [names["seat-02"]])
    finally:
        for dom in doms:
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
        with contextlib.suppress(libvirt.libvirtError):
            pool.destroy()
        hypervisor.close()


def qemu_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return dict(json.loads(out))


def test_the_unit_a_copy_runs_before_its_network() -> None:
    from labctl.stacking.identity import clone_dhcp_script

    script = clone_dhcp_script(["52:54:00:aa:bb:cc", "00:00:00:00:00:00"],
                               {"52:54:00:11:22:33": "0123456789abcdef0123456789abcdef",
                                "52:54:00:11:22:44": "$(reboot)", "x) reboot;;": "0123456789abcdef0123456789abcdef"})
    assert '" 52:54:00:aa:bb:cc "' in script  # seat-01's card; not the loopback's zeros, which every copy has
    assert "52:54:00:11:22:33) echo 0123456789abcdef0123456789abcdef > /etc/machine-id; exit 0 ;;" in script
    assert "reboot" not in script  # what is no MAC or machine-id never reaches the script
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0


def test_cache_command_when_nothing_runs(run: Callable[..., Result]) -> None:
    shown = run("cache")
    assert shown.code == 0 and "stopped" in shown.out and "labctl cache start" in shown.out
    data = json.loads(run("cache", "--json").out)
    assert [(c["name"], c["running"], c["requests"]) for c in data["caches"]] == [("apt", False, 0), ("pypi", False, 0)]
    assert data["relays"] == []  # no other host's machines reach them
    assert run("cache", "stop").out.strip() == "the caches were not running"


def test_a_seat_waits_for_a_keystone_slow_to_answer() -> None:
    """Keystone just restarted in a copy, under software emulation: its first requests can outlast one
    request's timeout. The copy's script waits for it (a real class failed here: the timeout escaped as
    a traceback) instead of failing the seat. The script's own functions, against a local server that
    lets the first requests hang."""
    import ast
    import http.server
    import threading
    import urllib.error
    import urllib.request

    from labctl.stacking.clone_guest import FIXUP_SCRIPT

    hangs = threading.Event()
    seen: list[str] = []

    class Keystone(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            if len(seen) <= 2:
                hangs.wait(3)  # longer than one request may take
                return
            self.send_response(201)
            self.send_header("X-Subject-Token", "tok")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keystone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wanted = {"call", "auth", "first_token"}
    tree = ast.parse(FIXUP_SCRIPT)
    functions = ast.Module([n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted], [])
    space: dict[str, object] = {"json": json, "time": time, "urllib": urllib, "REQUEST_TIMEOUT": 0.5,
                                "new_ip": f"127.0.0.1:{server.server_address[1]}"}
    assert {n.name for n in functions.body} == wanted  # type: ignore[attr-defined]
    exec(compile(functions, "fixup", "exec"), space)  # noqa: S102 - the script's own code, as the seat runs it
    try:
        status, token = space["first_token"]("pw", 60)  # type: ignore[operator]
        assert (status, token) == (201, "tok") and len(seen) == 3
        # Nothing answering at all: no answer, said as such, after the wait.
        server.shutdown()
        server.server_close()
        assert space["call"]("POST", "/auth/tokens", {}) == (0, None, b"")  # type: ignore[operator]
    finally:
        hangs.set()
