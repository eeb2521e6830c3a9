"""What a machine is given to use the host's caches, before DevStack starts. Pure.

- apt: an `Acquire::http::Proxy` for apt's http sources (the boxes' Debian and Ubuntu archives are
  http: apt checks their signatures), so that every package and package list comes through the cache.
- pip: `/etc/pip.conf`, the one file every pip of DevStack reads: DevStack runs `sudo -H pip` (root's
  HOME, so no ~stack/.pip), the stack user's pip, and pip in its global virtualenv, and all read the
  site-wide file. labctl does not set DevStack's PYPI_ALTERNATIVE_URL: tools/install_pip.sh then
  writes ~stack/.pip/pip.conf with the value of PYPI_OVERRIDE, which DevStack defines nowhere (an
  empty index-url, which would take precedence over /etc/pip.conf for the stack user).
- the machine's proxy (when the lab has one) is skipped for the cache's address (no_proxy), and
  pip.conf names no proxy of its own: pip would send even the cache's requests through it.
"""

from __future__ import annotations

from labctl.cache.services import Endpoints

APT_CONF = "/etc/apt/apt.conf.d/96labctl-cache"  # read after 95labctl-proxy: the cache wins for http
PIP_CONF = "/etc/pip.conf"
PIP_TIMEOUT = 120  # seconds: a cache fetching a large wheel from PyPI for the first time


def guest_files(family: str, ends: Endpoints) -> dict[str, str]:
    """Path -> content for a machine of this package family (apt, dnf, zypper)."""
    files = {
        PIP_CONF: ("# Written by labctl: the host's PyPI cache.\n[global]\n"
                   f"index-url = {ends.pypi_index}\ntrusted-host = {ends.address}\ntimeout = {PIP_TIMEOUT}\n"),
    }
    if family == "apt":
        files[APT_CONF] = ("// Written by labctl: the host's package cache.\n"
                           f'Acquire::http::Proxy "{ends.apt_proxy}";\nAcquire::Retries "3";\n')
    return files


# $1 address, $2.. ports: can this machine reach the host's caches? One line per cache that it cannot.
REACH_SCRIPT = r"""
address=$1; shift; bad=0
for port in "$@"; do
  timeout 10 bash -c ': < "/dev/tcp/$0/$1"' "$address" "$port" 2>/dev/null ||
    { echo "no answer from $address:$port"; bad=1; }
done
exit $bad
"""
