"""A copy's identity before it is made its own machine: the machine-id it boots with (from which
systemd-networkd derives its DHCP client id), given back before its network starts by a unit put on
the disk that is copied, and read from each machine before its disk is replaced. Used by a class's
copies (clone.py), seats made later from its base (remake.py) and machines made from a stacked image
(images.py)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from labctl.machine_status import MachineStatus, host_of
from labctl.passwords import PASSWORD_NAMES, Passwords
from labctl.protocols import HostKeyChanged, RemoteCommandFailed, SshUnreachable

if TYPE_CHECKING:
    from labctl.protocols import SessionPort, SshPort
    from labctl.state import LabDir

# Before seat-01's disk is copied. Every copy boots with seat-01's machine-id, from which
# systemd-networkd derives its DHCP client id: every seat would ask for, and get, seat-01's address.
# A unit that runs before systemd-networkd tells a copy from seat-01 by its network cards, and gives
# a copy back the machine-id it had before it was shut off (so its DHCP lease too: no address
# changes, and none is left stale behind it); a copy labctl knew no machine-id of asks DHCP by its
# MAC. On seat-01 it does nothing. It is removed from every seat once made (UNDO_TEMPLATE).
CLONE_DHCP_SCRIPT = """#!/bin/sh
# Written by labctl: a copy of a classroom's seat-01 takes back its own identity before its network.
for a in /sys/class/net/*/address; do
  case " {template} " in *" $(cat "$a") "*) exit 0 ;; esac
done
for a in /sys/class/net/*/address; do
  case "$(cat "$a")" in
{known}
  esac
done
for f in /etc/systemd/network/*.network; do
  [ -f "$f" ] && grep -q '^DHCP=' "$f" || continue
  mkdir -p "$f.d" && printf '[DHCPv4]\\nClientIdentifier=mac\\n' > "$f.d/labctl-clone.conf"
done
"""
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
_MACHINE_ID_RE = re.compile(r"[0-9a-f]{32}\Z")


def clone_dhcp_script(template_macs: Sequence[str], machine_ids: dict[str, str]) -> str:
    """The unit's script: seat-01's cards, and each copy's card -> its machine-id. Pure; values that
    are no MAC or machine-id are left out (they come from the machines)."""
    cards = " ".join(m for m in template_macs if _MAC_RE.match(m) and m.strip("0:"))  # not the loopback
    known = "".join(f"    {mac}) echo {mid} > /etc/machine-id; exit 0 ;;\n" for mac, mid in sorted(machine_ids.items())
                    if _MAC_RE.match(mac) and mac.strip("0:") and _MACHINE_ID_RE.match(mid))
    return CLONE_DHCP_SCRIPT.replace("{template}", cards).replace("{known}\n", known)


CLONE_DHCP_UNIT = """[Unit]
Description=labctl: a copy of a classroom seat asks DHCP as itself
DefaultDependencies=no
After=local-fs.target
Before=systemd-networkd.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/labctl-clone-dhcp

[Install]
WantedBy=systemd-networkd.service
"""
# DevStack's services, enabled by stack.sh, are disabled on the disk that is copied (their names kept
# in this file): a copy boots without starting them, only for the copy script to stop them at once
# (Keystone's uwsgi alone takes a minute or more to start under software emulation, and stopping a
# service still starting waits for it). The copy script starts them with its settings; UNDO_TEMPLATE
# enables and starts them again, on every copy and on the machine whose disk was copied.
TEMPLATE_UNITS = "/etc/labctl-template-units"
# $1 the script, $2 the unit (uploaded files): installed and enabled, DevStack's services disabled
# (the names merged with any an earlier try disabled), then everything on disk.
PREPARE_TEMPLATE = """set -e
install -m 0755 "$1" /usr/local/sbin/labctl-clone-dhcp
install -m 0644 "$2" /etc/systemd/system/labctl-clone-dhcp.service
rm -f "$1" "$2"
systemctl enable labctl-clone-dhcp.service >/dev/null 2>&1
{ cat UNITS 2>/dev/null || true
  systemctl list-unit-files 'devstack@*' --no-legend --state=enabled | awk '{print $1}'
} | grep -E '^devstack@[A-Za-z0-9_.:@-]+$' | sort -u > UNITS.new || true
mv UNITS.new UNITS
if [ -s UNITS ]; then systemctl disable $(cat UNITS) >/dev/null 2>&1; fi
sync
""".replace("UNITS", TEMPLATE_UNITS)
UNDO_TEMPLATE = ("systemctl disable labctl-clone-dhcp.service >/dev/null 2>&1 || true;"
                 " rm -f /etc/systemd/system/labctl-clone-dhcp.service /usr/local/sbin/labctl-clone-dhcp;"
                 f" if [ -s {TEMPLATE_UNITS} ]; then systemctl enable --now $(cat {TEMPLATE_UNITS}) >/dev/null 2>&1"
                 f" || true; fi; rm -f {TEMPLATE_UNITS}")


def prepare_copy(session: SessionPort, machine_ids: dict[str, str], what: str) -> None:
    """The disk about to be copied (a class's template, a stacked image) prepared in its machine: the unit
    that makes each copy ask DHCP as itself, DevStack's services disabled. If that fails half-way, what
    it did is undone (DevStack's services enabled again): the machine is never left unable to start them."""
    _, macs = session.run("cat /sys/class/net/*/address", "reading its network cards")
    script = session.upload_private(clone_dhcp_script(macs.split(), machine_ids).encode())
    unit = session.upload_private(CLONE_DHCP_UNIT.encode())
    try:
        session.run(shlex.join(["sudo", "sh", "-c", PREPARE_TEMPLATE, "prepare", script, unit]), what)
    except RemoteCommandFailed:
        session.run(f"sudo sh -c {shlex.quote(UNDO_TEMPLATE)}", "undoing what only its copies need")
        raise


def _read_identities(ssh: SshPort, lab_dir: LabDir, statuses: Sequence[MachineStatus],
                     seats: Sequence[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each running seat's machine-id and its network cards' MACs, read before its disk is replaced."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for status in statuses:
        if status.name in seats and status.ssh_address:
            with contextlib.suppress(SshUnreachable, RemoteCommandFailed, HostKeyChanged), \
                    ssh.session(host_of(lab_dir, status)) as session:
                _, out = session.run("cat /etc/machine-id /sys/class/net/*/address", "reading its identity")
                words = out.split()
                if words:
                    found[status.name] = (words[0], tuple(words[1:]))
    return found


def _identities(ssh: SshPort, lab_dir: LabDir, statuses: Sequence[MachineStatus],
                seats: Sequence[str]) -> dict[str, str]:
    """Each running seat's network cards -> its machine-id (what the copies' start-up unit knows)."""
    return {mac: mid for mid, macs in _read_identities(ssh, lab_dir, statuses, seats).values() for mac in macs}


def machine_ids_of(ssh: SshPort, lab_dir: LabDir, statuses: Sequence[MachineStatus],
                 seats: Sequence[str]) -> dict[str, str]:
    """Each running seat -> its machine-id: given back to it by the copy script when it boots a disk
    that has another's (a seat made later from the base, a machine made from an image)."""
    return {seat: mid for seat, (mid, _macs) in _read_identities(ssh, lab_dir, statuses, seats).items()}


def identity_spec(*, name: str, old_name: str, old_ip: str, new_ip: str, user: str, authorized_key: str,
                  machine_id: str, old: Passwords, own: Passwords, others: Sequence[str]) -> dict[str, object]:
    """The clone script's values: a copy of a stacked disk (`old_name` at `old_ip` with the passwords
    `old`) made machine `name` at `new_ip` with `own`; `others`: secrets that must be nowhere in it
    (sent as salted digests). Pure but for the salt."""
    mine, was = own.as_dict(), old.as_dict()
    salt = secrets.token_hex(16)
    forbidden = sorted({hashlib.sha256((salt + v).encode()).hexdigest() for v in others})
    return {"name": name, "old_name": old_name, "old_ip": old_ip, "new_ip": new_ip,
            "login_user": user, "authorized_key": authorized_key, "undo_template": UNDO_TEMPLATE,
            "template_units": TEMPLATE_UNITS, "machine_id": machine_id,
            "secrets": [[was[n], mine[n]] for n in PASSWORD_NAMES],
            **{n: [was[n], mine[n]] for n in PASSWORD_NAMES}, "salt": salt, "forbidden_sha256": forbidden}
