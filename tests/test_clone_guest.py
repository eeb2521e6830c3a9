"""The copy's script (labctl.stacking.clone_guest.FIXUP_SCRIPT), its database part run as a seat runs it,
against a `mysql` client that keeps its databases in SQLite (the real MariaDB is in the VMs only): a
compute DevStack keeps RabbitMQ's and MySQL's passwords in Nova's cell mappings, rows of nova_api, which
no rewrite of files reaches. A copy whose cells kept the template's passwords has no compute service up."""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from labctl.stacking.clone_guest import FIXUP_SCRIPT

# `mysql --defaults-extra-file=F -N -B [DATABASE]`, a statement on stdin: as root on the seat (MariaDB's
# unix_socket: any password), each statement logged; SHOW DATABASES lists the SQLite files.
MYSQL = """#!PYTHON
import os, re, sqlite3, sys
root = os.environ["FAKE_MYSQL"]
names = [a for a in sys.argv[1:] if not a.startswith("-")]
statement = sys.stdin.read().strip().rstrip(";")
with open(os.path.join(root, "log"), "a") as f:
    f.write(statement + "\\n")
if statement == "SHOW DATABASES":
    made = sorted(n[:-7] for n in os.listdir(root) if n.endswith(".sqlite"))
    print("\\n".join(["information_schema", "mysql", *made]))
elif statement.startswith("SELECT host FROM mysql.user"):
    print("localhost\\n%")
elif not statement.startswith("ALTER USER"):
    db = sqlite3.connect(os.path.join(root, names[0] + ".sqlite"))
    db.execute(statement.replace("\\\\'", "''"))
    db.commit()
"""
OLD_DB, NEW_DB = "TemplateDb0123456789", "SeatDb9876543210aa"
OLD_RABBIT, NEW_RABBIT = "TemplateMq0123", "SeatMq98765432"


def fix_mysql(tmp_path: Path, old_ip: str, new_ip: str) -> Path:
    """The script's fix_mysql (with its sh and say), run with the fake client first on PATH."""
    root = tmp_path / "mysql"
    root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    client = bin_dir / "mysql"
    client.write_text(MYSQL.replace("PYTHON", sys.executable))
    client.chmod(0o755)
    keystone = sqlite3.connect(root / "keystone.sqlite")
    keystone.execute("CREATE TABLE endpoint (url TEXT)")
    keystone.execute("INSERT INTO endpoint VALUES (?)", (f"http://{old_ip}/identity",))
    keystone.commit()
    nova = sqlite3.connect(root / "nova_api.sqlite")
    nova.execute("CREATE TABLE cell_mappings (name TEXT, transport_url TEXT, database_connection TEXT)")
    nova.executemany("INSERT INTO cell_mappings VALUES (?, ?, ?)", [
        ("cell0", "none:///", f"mysql+pymysql://root:{OLD_DB}@127.0.0.1/nova_cell0?charset=utf8"),
        ("cell1", f"rabbit://stackrabbit:{OLD_RABBIT}@{old_ip}:5672/",
         f"mysql+pymysql://root:{OLD_DB}@127.0.0.1/nova_cell1?charset=utf8")])
    nova.commit()
    wanted = {"sh", "say", "fix_mysql"}
    tree = ast.parse(FIXUP_SCRIPT)
    functions = ast.Module([n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted], [])
    assert {n.name for n in functions.body} == wanted  # type: ignore[attr-defined]
    space: dict[str, object] = {"os": os, "subprocess": subprocess, "sys": sys, "print": lambda *_a, **_k: None,
                                "old_ip": old_ip, "new_ip": new_ip,
                                "pairs": [(OLD_DB, NEW_DB), (OLD_RABBIT, NEW_RABBIT)]}
    exec(compile(functions, "fixup", "exec"), space)  # noqa: S102 - the script's own code, as the seat runs it
    os.environ["FAKE_MYSQL"] = str(root)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}:{path}"
    try:
        space["fix_mysql"](OLD_DB, NEW_DB, str(tmp_path / "client.cnf"))  # type: ignore[operator]
    finally:
        os.environ["PATH"] = path
        del os.environ["FAKE_MYSQL"]
    assert not (tmp_path / "client.cnf").exists()  # the password file goes
    return root


def cells(root: Path) -> dict[str, tuple[str, str]]:
    rows = sqlite3.connect(root / "nova_api.sqlite").execute("SELECT * FROM cell_mappings").fetchall()
    return {name: (transport, database) for name, transport, database in rows}


def test_novas_cells_get_the_seats_passwords(tmp_path: Path) -> None:
    # A compute class's copy: the same address (seat networks), new passwords.
    root = fix_mysql(tmp_path, "192.168.79.10", "192.168.79.10")
    assert cells(root) == {
        "cell0": ("none:///", f"mysql+pymysql://root:{NEW_DB}@127.0.0.1/nova_cell0?charset=utf8"),
        "cell1": (f"rabbit://stackrabbit:{NEW_RABBIT}@192.168.79.10:5672/",
                  f"mysql+pymysql://root:{NEW_DB}@127.0.0.1/nova_cell1?charset=utf8")}
    log = (root / "log").read_text()
    assert f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{NEW_DB}'" in log
    assert f"ALTER USER 'root'@'%' IDENTIFIED BY '{NEW_DB}'" in log
    assert OLD_DB not in json.dumps(cells(root)) and OLD_RABBIT not in json.dumps(cells(root))


def test_a_new_address_reaches_the_cells_and_the_catalog(tmp_path: Path) -> None:
    root = fix_mysql(tmp_path, "192.168.79.10", "192.168.79.12")
    assert cells(root)["cell1"][0] == f"rabbit://stackrabbit:{NEW_RABBIT}@192.168.79.12:5672/"
    urls = sqlite3.connect(root / "keystone.sqlite").execute("SELECT url FROM endpoint").fetchall()
    assert urls == [("http://192.168.79.12/identity",)]


def test_keystones_keys_are_made_anew_as_keystone_manage_leaves_them(tmp_path: Path) -> None:
    """Fernet and credential keys written by the script itself (keystone-manage would start twice, half a
    minute each under emulation): a staged key 0 and a primary 1, each a working Fernet key, the folder
    0700 and its keys 0600 as Keystone wants them, its owner kept, none of the template's keys left."""
    from cryptography.fernet import Fernet

    folder = tmp_path / "fernet-keys"
    folder.mkdir(mode=0o755)
    old = {str(i): Fernet.generate_key() for i in range(3)}
    for index, key in old.items():
        (folder / index).write_bytes(key)
    tree = ast.parse(FIXUP_SCRIPT)
    functions = ast.Module([n for n in tree.body if isinstance(n, ast.FunctionDef)
                            and n.name == "new_key_repository"], [])
    space: dict[str, object] = {"os": os, "shutil": __import__("shutil"), "base64": __import__("base64")}
    exec(compile(functions, "fixup", "exec"), space)  # noqa: S102 - the script's own code, as the seat runs it
    space["new_key_repository"](str(folder))  # type: ignore[operator]

    assert sorted(p.name for p in folder.iterdir()) == ["0", "1"] and not list(tmp_path.glob("*.labctl-new"))
    assert folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == os.getuid()
    keys = {p.name: p.read_bytes() for p in folder.iterdir()}
    for key in keys.values():
        assert (key.strip() == key and Fernet(key).decrypt(Fernet(key).encrypt(b"token")) == b"token")
    assert all((folder / name).stat().st_mode & 0o777 == 0o600 for name in keys)
    assert keys["0"] != keys["1"] and not set(keys.values()) & set(old.values())


def test_the_copied_disk_boots_without_devstacks_services_and_gets_them_back(tmp_path: Path) -> None:
    """PREPARE_TEMPLATE disables DevStack's services on the disk that is copied (a copy would start
    Keystone at boot only for the copy script to stop it), keeping their names, also when run again after
    a try that stopped; UNDO_TEMPLATE enables and starts them again. Run by sh with a `systemctl` that
    logs its calls, the scripts' paths moved under tmp_path (they write /etc and /usr/local as root)."""
    from labctl.stacking.identity import PREPARE_TEMPLATE, TEMPLATE_UNITS, UNDO_TEMPLATE

    bin_dir, root = tmp_path / "bin", tmp_path / "root"
    for folder in (bin_dir, root / "etc/systemd/system", root / "usr/local/sbin"):
        folder.mkdir(parents=True)
    enabled = tmp_path / "enabled"
    enabled.write_text("devstack@keystone.service\ndevstack@n-cpu.service\n")
    (bin_dir / "systemctl").write_text(f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls
case "$1" in
  list-unit-files) while read -r u; do echo "$u enabled enabled"; done < {enabled};
                   echo 'devstack@$(reboot).service enabled enabled' ;;
  disable) : > {enabled} ;;
esac
""")
    (bin_dir / "systemctl").chmod(0o755)

    def run(script: str, *args: str) -> None:
        for path in (TEMPLATE_UNITS, "/usr/local/sbin/", "/etc/systemd/system/"):
            script = script.replace(path, f"{root}{path}")
        subprocess.run(["sh", "-c", script, "prepare", *args], check=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})

    def calls() -> list[str]:
        lines = (tmp_path / "calls").read_text().splitlines()
        (tmp_path / "calls").unlink()
        return [line for line in lines if not line.startswith("list-unit-files")]

    for _ in range(2):  # a second try meets them disabled already: their names are kept
        (tmp_path / "s").write_text("script")
        (tmp_path / "u").write_text("unit")
        run(PREPARE_TEMPLATE, str(tmp_path / "s"), str(tmp_path / "u"))
        assert (root / TEMPLATE_UNITS.lstrip("/")).read_text() == "devstack@keystone.service\ndevstack@n-cpu.service\n"
    assert calls() == ["enable labctl-clone-dhcp.service",
                       "disable devstack@keystone.service devstack@n-cpu.service",
                       "enable labctl-clone-dhcp.service",
                       "disable devstack@keystone.service devstack@n-cpu.service"]
    run(UNDO_TEMPLATE)
    assert calls() == ["disable labctl-clone-dhcp.service",
                       "enable --now devstack@keystone.service devstack@n-cpu.service"]
    assert not (root / TEMPLATE_UNITS.lstrip("/")).exists()
    assert not list((root / "usr/local/sbin").iterdir()) and not list((root / "etc/systemd/system").iterdir())


def test_a_prepare_that_fails_half_way_leaves_devstacks_services_enabled(tmp_path: Path) -> None:
    """prepare_copy runs PREPARE_TEMPLATE in the machine; when it fails (after `systemctl disable`, say),
    UNDO_TEMPLATE runs before the error goes on: the machine is never left with its services disabled.
    The scripts run by sh as in the test above; the session fails PREPARE after its disable ran."""
    import pytest

    from labctl.protocols import RemoteCommandFailed
    from labctl.stacking.identity import TEMPLATE_UNITS, prepare_copy

    bin_dir, root = tmp_path / "bin", tmp_path / "root"
    for folder in (bin_dir, root / "etc/systemd/system", root / "usr/local/sbin"):
        folder.mkdir(parents=True)
    (bin_dir / "systemctl").write_text(f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls
[ "$1" = list-unit-files ] && echo 'devstack@keystone.service enabled enabled'
[ "$1" = disable ] && [ "$2" = devstack@keystone.service ] && exit 1
exit 0
""")
    (bin_dir / "systemctl").chmod(0o755)

    class Session:
        def run(self, command: str, what: str) -> tuple[int, str]:
            if command.startswith("cat /sys/class/net"):
                return 0, "52:54:00:aa:bb:cc\n"
            for path in (TEMPLATE_UNITS, "/usr/local/sbin/", "/etc/systemd/system/"):
                command = command.replace(path, f"{root}{path}")
            argv = __import__("shlex").split(command)
            assert argv[:3] == ["sudo", "sh", "-c"], command
            proc = subprocess.run(["sh", "-c", *argv[3:]], capture_output=True, text=True,
                                  env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
            if proc.returncode:
                raise RemoteCommandFailed("seat-01", what, proc.returncode, proc.stdout + proc.stderr)
            return 0, proc.stdout

        def upload_private(self, data: bytes) -> str:
            path = tmp_path / f"upload-{len(list(tmp_path.glob('upload-*')))}"
            path.write_bytes(data)
            return str(path)

    with pytest.raises(RemoteCommandFailed, match="preparing seat-01's disk to be copied"):
        prepare_copy(Session(), {}, "preparing seat-01's disk to be copied")  # type: ignore[arg-type]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[-2:] == ["disable labctl-clone-dhcp.service", "enable --now devstack@keystone.service"], calls
    assert not (root / TEMPLATE_UNITS.lstrip("/")).exists() and not list((root / "usr/local/sbin").iterdir())
