"""A machine's way out, set before anything is downloaded: the lab's extra CAs trusted, its proxy in
every tool's own file, and the host's package caches. Over SSH, with files uploaded (never a value on
a command line); proxy files with credentials readable by root and the stack group only."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.cache.guest import REACH_SCRIPT, guest_files
from labctl.cache.services import Endpoints
from labctl.model import Proxy
from labctl.protocols import RemoteCommandFailed, SessionPort

CA_STORES = {  # where each package family takes extra CAs, the command that rebuilds its bundle, the bundle
    "apt": ("/usr/local/share/ca-certificates", "update-ca-certificates", "/etc/ssl/certs/ca-certificates.crt"),
    "dnf": ("/etc/pki/ca-trust/source/anchors", "update-ca-trust extract", "/etc/pki/tls/certs/ca-bundle.crt"),
    "zypper": ("/etc/pki/trust/anchors", "update-ca-certificates", "/etc/ssl/ca-bundle.pem"),
}
# $1: the system's bundle, then one line of each certificate's body: is each in the bundle now?
CA_CHECK_SCRIPT = r"""
bundle=$1; shift
for line in "$@"; do grep -qF -- "$line" "$bundle" || { echo "not in $bundle: ...$line..."; exit 1; }; done
"""

# The stack group, with the login user in it (its login shells read the proxy's files too).
STACK_GROUP = 'getent group stack >/dev/null || groupadd stack; usermod -aG stack "${SUDO_USER:-root}"'


def proxy_files(family: str, proxy: Proxy, extra_no_proxy: Sequence[str]) -> dict[str, str]:
    """Files that make the package manager, git, pip, sudo and shells use the proxy. Pure."""
    no_proxy = ",".join(dict.fromkeys(
        [h for h in proxy.no_proxy.split(",") if h] + ["localhost", "127.0.0.1", *extra_no_proxy]))
    env = {"http_proxy": proxy.http, "https_proxy": proxy.https, "no_proxy": no_proxy}
    exports = "".join(f"export {k}={shlex.quote(v)}\nexport {k.upper()}={shlex.quote(v)}\n"
                      for k, v in env.items() if v)
    files = {
        "/etc/profile.d/labctl-proxy.sh": "# Written by labctl: the lab's proxy.\n" + exports,
        # sudo resets the environment: keep the proxy for DevStack's `sudo pip` and package installs.
        "/etc/sudoers.d/labctl-proxy":
            'Defaults env_keep += "http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY"\n',
        "/etc/pip.conf": f"[global]\nproxy = {proxy.https or proxy.http}\n",
        "/etc/gitconfig": f"[http]\n\tproxy = {proxy.https or proxy.http}\n",
    }
    if family == "apt":
        files["/etc/apt/apt.conf.d/95labctl-proxy"] = "".join(
            f'Acquire::{scheme}::Proxy "{url}";\n' for scheme, url in (("http", proxy.http), ("https", proxy.https))
            if url)
    elif family == "zypper":
        files["/etc/sysconfig/proxy"] = (f'PROXY_ENABLED="yes"\nHTTP_PROXY="{proxy.http or ""}"\n'
                                         f'HTTPS_PROXY="{proxy.https or ""}"\nNO_PROXY="{no_proxy}"\n')
    return files


def install_file(session: SessionPort, path: str, content: str, mode: str, owner: str = "root",
                  group: str | None = None) -> None:
    tmp = session.upload_private(content.encode())
    session.run(shlex.join(["sudo", "install", "-D", "-m", mode, "-o", owner, "-g", group or owner, tmp, path])
                + " && " + shlex.join(["rm", "-f", tmp]), f"writing {path}")


@dataclass(frozen=True)
class NetworkAccess:
    """How a machine reaches outside: CAs to trust, a proxy, the host's package caches."""

    package_family: str
    certificates: tuple[tuple[str, str], ...] = ()  # (file name, PEM text)
    proxy: Proxy | None = None
    no_proxy_hosts: tuple[str, ...] = ()
    caches: Endpoints | None = None

    def __bool__(self) -> bool:
        return bool(self.certificates or self.proxy or self.caches)


def configure_network_access(session: SessionPort, job: NetworkAccess) -> None:
    """Extra CAs trusted and proxies set, before anything is downloaded."""
    if job.certificates:
        folder, update, bundle = CA_STORES[job.package_family]
        for name, pem in job.certificates:
            install_file(session, f"{folder}/{name}", pem, "0644")
        session.run("sudo " + update, "updating the CA bundle")
        # A certificate the family's tool did not take would fail every download later, far from here.
        bodies = [pem.splitlines()[1] for _, pem in job.certificates]
        session.run(shlex.join(["sh", "-c", CA_CHECK_SCRIPT, "check", bundle, *bodies]),
                    "checking that the lab's CAs are trusted")
    if job.proxy:
        # A proxy URL with a user and password: its files readable by root and the stack group only
        # (DevStack runs as stack; the login user joins the group), and the password never on a
        # command line.
        secret = job.proxy.has_credentials
        if secret:
            session.run("sudo sh -c " + shlex.quote(STACK_GROUP), "making the stack group")
        for path, content in proxy_files(job.package_family, job.proxy, job.no_proxy_hosts).items():
            mode = "0440" if path.startswith("/etc/sudoers.d/") else "0640" if secret else "0644"
            install_file(session, path, content, mode, group="stack" if secret else None)
        if job.package_family == "dnf":
            # dnf reads its proxy from the [main] section of dnf.conf, its only section by default.
            line = session.upload_private(f"proxy={job.proxy.http or job.proxy.https or ''}\n".encode())
            script = ('grep -q "^proxy=" /etc/dnf/dnf.conf || cat "$1" >> /etc/dnf/dnf.conf; rm -f "$1";'
                      ' [ "$2" = secret ] && chmod 0640 /etc/dnf/dnf.conf; true')
            session.run(shlex.join(["sudo", "sh", "-c", script, "dnf-proxy", line, "secret" if secret else "plain"]),
                        "setting dnf's proxy")
    if job.caches:
        use_caches(session, job.package_family, job.caches)


def use_caches(session: SessionPort, family: str, ends: Endpoints) -> None:
    """The machine fetches packages through the host's caches (after the proxy's files: the cache's
    pip.conf replaces the proxy's), and can reach them: never the internet behind their back."""
    code, out = session.run(shlex.join(["bash", "-c", REACH_SCRIPT, "reach", ends.address,
                                        str(ends.apt_port), str(ends.pypi_port)]),
                            "reaching the host's caches", check=False)
    if code != 0:
        raise RemoteCommandFailed(session.target.name, "reaching the host's package caches", code,
                                  f"{out.strip()} (labctl cache shows whether they run; a firewall on the host"
                                  f" must allow TCP {ends.apt_port} and {ends.pypi_port} from the labs' machines)")
    for path, content in guest_files(family, ends).items():
        install_file(session, path, content, "0644")
