#!/bin/sh
# DevStack's global virtualenv made in a DevStack-ready box (labctl.devstack_python): run by
# mmdebstrap's customize hook, before debian-customize.sh, as
#   devstack-venv.sh ROOTFS FOLDER
# FOLDER holds constraints.txt, requirements.txt (lines labctl checked: names, versions, markers) and
# ca.pem (the host's trusted CAs, for pip's downloads; not left in the box).
#
# The files come from the lab's mirrors, perhaps a stranger's, and this runs on the host: pip installs
# wheels only (--only-binary :all:), whose installation runs none of their code, all at once, and
# nothing runs the virtualenv's Python after it. A requirement that has no wheel at its pinned version
# is stood in for, while pip resolves, by an empty record of it (so that pip takes it as installed),
# removed after: stack.sh builds and installs it in the machine, as it would have.
set -eu
root=$1
src=$2
venv=/opt/stack/data/venv
work=/tmp/labctl-venv

# Name resolution as the host's while pip runs: the box's own resolv.conf points at the machine's
# resolver (systemd-resolved's package made it a link already), which the build has not.
mv "$root/etc/resolv.conf" "$root/etc/resolv.conf.labctl" 2>/dev/null || true
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
trap 'rm -f "$root/etc/resolv.conf"; mv "$root/etc/resolv.conf.labctl" "$root/etc/resolv.conf" 2>/dev/null || true' EXIT

# What DevStack's create-stack-user.sh makes (labctl.provision does the same in the machine): stack.sh
# runs pip as this user in the virtualenv.
chroot "$root" sh -c 'getent group stack >/dev/null || groupadd stack;
  getent passwd stack >/dev/null || useradd -g stack -s /bin/bash -d /opt/stack -m stack'
chmod +x "$root/opt/stack"
install -d -o 0 -g 0 -m 0755 "$root$work"
install -m 0644 "$src/constraints.txt" "$src/requirements.txt" "$src/ca.pem" "$root$work/"
chroot "$root" install -d -o stack -g stack /opt/stack/data

ids="$(chroot "$root" id -u stack):$(chroot "$root" id -g stack)"
as_stack() {
  chroot --userspec="$ids" "$root" env -i HOME=/opt/stack PATH=/usr/bin:/bin LC_ALL=C.UTF-8 \
    PIP_CONFIG_FILE=/dev/null "$@"
}
pip() {
  as_stack $venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-input --progress-bar off \
    --retries 2 --timeout 60 --only-binary :all: --cert $work/ca.pem -c $work/constraints.txt "$@"
}

as_stack python3 -m venv --system-site-packages $venv
pip -U pip 'setuptools[core]'
site=$(ls -d "$root$venv"/lib/python3*/site-packages)
: > "$root$work/stubs"
tries=0
while ! pip -r $work/requirements.txt > "$root$work/pip.log" 2>&1; do
  if grep -q -e NewConnectionError -e 'name resolution' -e SSLError -e ProxyError -e ConnectTimeout -e ReadTimeout \
      "$root$work/pip.log"; then  # not a missing wheel: a package index out of reach
    grep -m 3 -e Error "$root$work/pip.log" >&2
    echo "devstack-venv.sh: pip could not reach its package index (above)" >&2
    exit 1
  fi
  # What pip found no wheel of: named as not found, or as a constraint that a requirement conflicts
  # with (with --only-binary, the pinned version has no wheel).
  missing=$(sed -n -e 's/^ERROR: No matching distribution found for \([A-Za-z0-9._-]*\).*/\1/p' \
    -e 's/^ *The user requested (constraint) \([A-Za-z0-9._-]*\)===.*/\1/p' "$root$work/pip.log" |
    grep -vixF -f "$root$work/stubs" | sort -u)
  tries=$((tries + 1))
  if [ -z "$missing" ] || [ $tries -gt 40 ]; then
    tail -n 20 "$root$work/pip.log" >&2
    echo "devstack-venv.sh: pip could not make DevStack's virtualenv (above)" >&2
    exit 1
  fi
  for name in $missing; do
    # Its pinned version, as upper-constraints.txt has it (name===version), names compared as pip does.
    norm=$(echo "$name" | tr 'A-Z_.' 'a-z--')
    version=$(sed -n 's/^\([A-Za-z0-9._-]*\)===\([A-Za-z0-9.+!_-]*\).*/\1 \2/p' "$root$work/constraints.txt" |
      while read -r pinned v; do
        [ "$(echo "$pinned" | tr 'A-Z_.' 'a-z--')" = "$norm" ] && echo "$v" && break
      done)
    if [ -z "$version" ]; then
      tail -n 20 "$root$work/pip.log" >&2
      echo "devstack-venv.sh: $name has no wheel and no pinned version: its place cannot be held" >&2
      exit 1
    fi
    echo "$name" >> "$root$work/stubs"
    stub="$site/$(echo "$name" | tr -- '-.' '__')-$version.dist-info"
    mkdir "$stub"
    printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' "$name" "$version" > "$stub/METADATA"
    printf 'labctl-stub\n' > "$stub/INSTALLER"
    : > "$stub/RECORD"
    echo "devstack-venv.sh: $name $version has no wheel: left to stack.sh"
  done
done
for stub in "$site"/*.dist-info; do
  if [ "$(cat "$stub/INSTALLER" 2>/dev/null)" = "labctl-stub" ]; then
    rm -rf "$stub"
  fi
done
chroot "$root" chown -R stack:stack /opt/stack/data
rm -rf "$root$work"
echo "devstack-venv.sh: $(ls -d "$site"/*.dist-info | wc -l) distributions in $venv"
