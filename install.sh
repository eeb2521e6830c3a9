#!/usr/bin/env bash
# Install everything labctl needs on Debian or Ubuntu, on a fresh machine:
#   - system packages (Vagrant, vagrant-libvirt, libvirt, QEMU, box-building tools) through apt;
#   - libvirt started (systemd where it runs, by hand where PID 1 is not systemd);
#   - labctl in ./.venv, with `labctl` linked into ~/.local/bin (and told how to reach it if that
#     folder is not on PATH).
# Safe to run again. Needs root or sudo for the apt and libvirt steps only.
#   ./install.sh          what a user needs
#   ./install.sh --dev    and the test tools (pytest, ruff, mypy, a headless browser): for contributors and CI
#   ./install.sh --link   only link labctl into ~/.local/bin again and check PATH
#   ./install.sh --uninstall [--keep-labs]   undo it (refused while labs exist, unless --keep-labs)
# Upgrade: git pull && ./install.sh (labs keep running; labctl reads the records older versions wrote).
set -euo pipefail
cd "$(dirname "$0")"

DEV=0
LINK_ONLY=0
UNINSTALL=0
KEEP_LABS=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --link) LINK_ONLY=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --keep-labs) KEEP_LABS=1 ;;
    *) echo "install.sh: unknown option $arg (hint: ./install.sh [--dev] [--link] [--uninstall [--keep-labs]])" >&2
       exit 2 ;;
  esac
done
LIBVIRTD_CONF=${LIBVIRTD_CONF:-/etc/libvirt/libvirtd.conf}
CONF_MARK='# labctl: libvirt group access without polkit (install.sh)'

link_labctl() {
  mkdir -p "$HOME/.local/bin"
  ln -sf "$PWD/.venv/bin/labctl" "$HOME/.local/bin/labctl"
  echo "==> done: $(.venv/bin/labctl --version) (linked as ~/.local/bin/labctl)"
  case ":$PATH:" in
    *":$HOME/.local/bin:"*|*":$HOME/.local/bin/:"*) echo "    next: labctl up --distro debian" ;;
    *)
      echo "    ~/.local/bin is not on your PATH, so \`labctl\` is not found yet. Add it:"
      echo "      echo 'export PATH=\"\$HOME/.local/bin:\$PATH\"' >> ~/.bashrc && . ~/.bashrc"
      echo "    (or run $PWD/.venv/bin/labctl)" ;;
  esac
}
if [ "$LINK_ONLY" = 1 ]; then
  link_labctl
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install.sh: run as root, or install sudo first" >&2; exit 1; }
  SUDO=(sudo)
fi

uninstall() {
  # Labs first: their machines would run on with no labctl to reach or remove them.
  if [ -x .venv/bin/labctl ]; then
    if ! listed=$(.venv/bin/labctl list --json); then
      echo "install.sh: labctl could not list the labs (above), so nothing was removed" >&2
      echo "  hint: start libvirtd and run ./install.sh --uninstall again" >&2
      exit 1
    fi
    labs=$(printf '%s' "$listed" | .venv/bin/python -c 'import json,sys; print(" ".join(l["lab"] for l in json.load(sys.stdin)["labs"]))')
    if [ -n "$labs" ] && [ "$KEEP_LABS" = 0 ]; then
      echo "install.sh: labs still exist: $labs" >&2
      echo "  hint: remove each with \`labctl destroy --lab NAME\`, or run ./install.sh --uninstall --keep-labs to leave them (their machines keep running)" >&2
      exit 1
    fi
    .venv/bin/labctl cache stop -y >/dev/null 2>&1 || true  # the host's caches run from this .venv
  fi
  link="$HOME/.local/bin/labctl"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$PWD/.venv/bin/labctl" ]; then
    rm -f "$link" && echo "==> removed $link"
  fi
  if [ -f "$LIBVIRTD_CONF" ] && grep -qxF "$CONF_MARK" "$LIBVIRTD_CONF"; then
    # The four lines install.sh added (its mark and the three settings after it), and nothing else.
    kept=$(awk -v mark="$CONF_MARK" 'skip > 0 { skip--; next } $0 == mark { skip = 3; next } { print }' "$LIBVIRTD_CONF")
    printf '%s\n' "$kept" | "${SUDO[@]}" tee "$LIBVIRTD_CONF" >/dev/null
    echo "==> removed labctl's lines from $LIBVIRTD_CONF (restart libvirtd for them to go)"
  fi
  rm -rf .venv && echo "==> removed $PWD/.venv"
  echo "==> labctl is uninstalled. Left as they were:"
  echo "    - the system packages (shared with other tools): sudo apt-get remove ${PACKAGES[*]}"
  echo "    - labctl's own data: ${LABCTL_HOME:-${XDG_DATA_HOME:-~/.local/share}/labctl} (kept labs' records, boxes built here, caches)"
  echo "    - this checkout: $PWD"
}

PACKAGES=(
  # VMs: QEMU/KVM under libvirt, driven by Vagrant and its libvirt provider.
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients dnsmasq-base
  vagrant vagrant-libvirt ruby
  # Building libvirt-python in the virtualenv.
  libvirt-dev pkg-config gcc python3-dev python3-venv
  # SSH to the VMs, and building a Debian box offline (labctl box build).
  openssh-client openssh-server mmdebstrap extlinux e2fsprogs git
  # The host's package cache for every lab (labctl cache); the PyPI cache comes with labctl (devpi-server).
  apt-cacher-ng
  # Fonts for the classroom sheet's HTML (opened in a browser).
  fonts-dejavu-core
)
# The tests look at the classroom sheet the way a person does (a real browser), and at a watched
# status in a real terminal (tmux).
[ "$DEV" = 1 ] && PACKAGES+=(chromium-headless-shell tmux)
if [ "$UNINSTALL" = 1 ]; then
  uninstall
  exit 0
fi
echo "==> apt packages"
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${PACKAGES[@]}" >/dev/null

echo "==> libvirt"
if [ -d /run/systemd/system ]; then
  "${SUDO[@]}" systemctl enable --now virtlogd libvirtd
else
  # No systemd (containers, WSL, CI sandboxes), hence no polkit, which is what lets the libvirt
  # group manage VMs on a desktop: the same rule through libvirt's own socket permissions
  # (read-write socket root:libvirt 0770, members of libvirt only). Then start the daemons by hand.
  conf=$LIBVIRTD_CONF
  if ! grep -qxF "$CONF_MARK" "$conf"; then
    printf '%s\n' "$CONF_MARK" 'unix_sock_group = "libvirt"' \
      'unix_sock_rw_perms = "0770"' 'auth_unix_rw = "none"' | "${SUDO[@]}" tee -a "$conf" >/dev/null
    if pgrep -x libvirtd >/dev/null; then  # running with the old settings: restart it (VMs keep running)
      "${SUDO[@]}" pkill -x libvirtd
      for _ in $(seq 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
    fi
  fi
  pgrep -x virtlogd >/dev/null || "${SUDO[@]}" virtlogd -d
  pgrep -x libvirtd >/dev/null || "${SUDO[@]}" libvirtd -d
fi
if [ "$(id -u)" -ne 0 ] && ! id -nG | tr ' ' '\n' | grep -qx libvirt; then
  "${SUDO[@]}" usermod -aG libvirt "$USER"
  echo "    added $USER to the libvirt group: log out and in again (or run: newgrp libvirt)"
fi

echo "==> labctl in .venv"
# Debian's own python3 where there is one: a venv made from a Python in someone's home (pyenv)
# cannot be run by the other users of the machine.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
fi
if [ -e .venv/bin/python ] && [ "$(readlink -f .venv/bin/python)" != "$(readlink -f "$(command -v "$PYTHON")")" ]; then
  rm -rf .venv  # made by another Python: venv cannot switch it over
fi
"$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
if [ "$DEV" = 1 ]; then
  .venv/bin/pip install -q -e '.[test]'
else
  .venv/bin/pip install -q -e .
fi
link_labctl
