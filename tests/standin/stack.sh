#!/usr/bin/env bash
# Stand-in for DevStack's stack.sh, for labctl's tests only (DevStack's git server is out of reach
# here). It behaves like the real one where labctl can tell: it refuses root, reads local.conf's
# [[local|localrc]] from its own folder, needs passwordless sudo, logs to LOGFILE with
# tools/outfilter.py's "timestamp | " lines and xtrace, announces its phases with echo_summary,
# takes a little time, prints the same closing lines, and fails on request:
#   STANDIN_FAIL_AT="Starting Neutron"   (in localrc) fail when that phase starts
#   STANDIN_PHASE_SECONDS=0.2            time per phase
#   STANDIN_HEALTH_FAIL=keystone         its Keystone token API (tools/identity) refuses the credentials
set -o errexit
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
if [[ $EUID -eq 0 ]]; then
    echo "You are running this script as root."
    echo "Cut it out."
    exit 1
fi
[[ -r $TOP_DIR/local.conf ]] || { echo "stack.sh: no local.conf in $TOP_DIR"; exit 1; }
# The [[local|localrc]] section, as inc/meta-config's get_meta_section extracts it.
awk '/^\[\[.+\|.*\]\]/ { gsub("[][]", "", $1); split($1, a, "|"); on = (a[1] == "local" && a[2] == "localrc"); next }
     on { print }' "$TOP_DIR/local.conf" > "$TOP_DIR/.localrc.auto"
STANDIN_CALLS=()
function enable_service { STANDIN_CALLS+=("enable_service $*"); }
function disable_service { STANDIN_CALLS+=("disable_service $*"); }
function enable_plugin { STANDIN_CALLS+=("enable_plugin $*"); }
source "$TOP_DIR/.localrc.auto"
DEST=${DEST:-/opt/stack}
STANDIN_PHASE_SECONDS=${STANDIN_PHASE_SECONDS:-0.2}
sudo -n true || { echo "stack.sh: $USER needs passwordless sudo"; exit 1; }
command -v lsb_release >/dev/null || { echo "Unable to determine DISTRO, can not continue."; exit 1; }
if [[ -n "${GIT_BASE:-}" ]]; then
    # What DevStack clones first of all, as its git_clone does it: requirements, from GIT_BASE.
    rm -rf "$DEST/requirements"
    git clone -q --no-checkout "$GIT_BASE/openstack/requirements.git" "$DEST/requirements"
    (cd "$DEST/requirements" && git fetch -q origin master && git checkout -q FETCH_HEAD)
fi

if [[ -n "$LOGFILE" ]]; then
    mkdir -p "$(dirname "$LOGFILE")"
    LOGFILE_NAME=$LOGFILE
    LOGFILE=$LOGFILE.$(date +%F-%H%M%S)
    SUMFILE=$LOGFILE.summary
    exec 3>&1
    exec 1> >(while IFS= read -r l; do printf '%s | %s\n' "$(date '+%F %T.%3N')" "$l"; done | tee -a "$LOGFILE") 2>&1
    exec 6>>"$SUMFILE"
    ln -sf "$LOGFILE" "$LOGFILE_NAME"
else
    exec 3>&1 6>&1
fi
function echo_summary { echo -e "$@" >&6; }
trap 'echo "${0##*/} failed: full log in $LOGFILE"; exit 1' ERR
export PS4='+ ${BASH_SOURCE##*/}:${FUNCNAME[0]:-main}:${LINENO} :   '
set -o xtrace

echo_summary "stack.sh log $LOGFILE"
uname -a
for phase in "Installing package prerequisites" "Installing OpenStack project source" "Starting Keystone" \
             "Configuring Glance" "Starting Nova API" "Starting Neutron" "Uploading images" "Starting Horizon"; do
    echo_summary "$phase"
    sleep "$STANDIN_PHASE_SECONDS"
    echo "working on: $phase (admin password is $ADMIN_PASSWORD)"
    if [[ "$phase" == "${STANDIN_FAIL_AT:-}" ]]; then
        echo "ERROR: $phase failed on request (STANDIN_FAIL_AT)"
        false
    fi
done
# A project from KEYSTONE_REPO (devstack.projects: the developer's checkout), as DevStack clones it,
# run as a service of its own the way DevStack runs Keystone (a systemd unit devstack@keystone, as
# stack): a web server over the checkout, which does not start when keystone/version.py is broken.
if [[ -n "${KEYSTONE_REPO:-}" ]]; then
    rm -rf "$DEST/keystone"
    git clone -q --branch "${KEYSTONE_BRANCH:-master}" "$KEYSTONE_REPO" "$DEST/keystone"
    # A library LIBS_FROM_GIT names, from its own variables as DevStack's stackrc has them (the
    # stand-in knows oslo.config's only): Keystone's service does not start when its check.py fails.
    library_check=""
    if [[ ",${LIBS_FROM_GIT:-}," == *,oslo.config,* ]]; then
        rm -rf "$DEST/oslo.config"
        git clone -q --branch "${OSLOCFG_BRANCH:-master}" "$OSLOCFG_REPO" "$DEST/oslo.config"
        library_check="ExecStartPre=/usr/bin/python3 $DEST/oslo.config/check.py"
    fi
    sudo tee /etc/systemd/system/devstack@keystone.service >/dev/null <<UNIT
[Unit]
Description=Devstack devstack@keystone.service (the stand-in's)
[Service]
User=$USER
ExecStartPre=/usr/bin/python3 $DEST/keystone/keystone/version.py
$library_check
ExecStart=/usr/bin/python3 -m http.server 5000 --bind 0.0.0.0 --directory $DEST/keystone
[Install]
WantedBy=multi-user.target
UNIT
    sudo systemctl daemon-reload
    sudo systemctl enable --now devstack@keystone.service
fi
# Keystone answers behind Apache at /identity: the stand-in's token API (a service on port 80)
# answers what labctl's health check asks of it (in a machine that runs systemd, not in the tests'
# namespaced hosts, which have no health check).
echo "${STANDIN_HEALTH_FAIL:-}" | sudo tee /etc/standin-health-fail >/dev/null
if [[ -d /run/systemd/system ]]; then
    sudo install -m 0755 "$TOP_DIR/tools/identity" /usr/local/bin/standin-identity
    sudo tee /etc/systemd/system/standin-identity.service >/dev/null <<UNIT
[Unit]
Description=the stand-in's Keystone token API at http://$HOST_IP/identity
[Service]
ExecStart=/usr/bin/python3 /usr/local/bin/standin-identity
[Install]
WantedBy=multi-user.target
UNIT
    sudo systemctl daemon-reload
    sudo systemctl enable standin-identity.service 2>/dev/null
    sudo systemctl restart standin-identity.service
fi
# What a test can check afterwards: what this run saw.
{
    echo "HOST_IP=$HOST_IP"; echo "SERVICE_HOST=${SERVICE_HOST:-}"; echo "ENABLED_SERVICES=${ENABLED_SERVICES:-}"
    echo "FORCE=${FORCE:-}"; echo "http_proxy=${http_proxy:-}"; echo "USER=$USER"
    echo "REQUIREMENTS=$(git -C "$DEST/requirements" rev-parse HEAD 2>/dev/null)"
    printf 'CALL=%s\n' "${STANDIN_CALLS[@]}"
} > "$DEST/standin-stacked"
set +o xtrace
exec 1>&3
echo ""
echo "This is your host IP address: $HOST_IP"
if [[ -z "${ENABLED_SERVICES:-}" ]]; then
    echo "Horizon is now available at http://${SERVICE_HOST:-$HOST_IP}/dashboard"
    echo "Keystone is serving at http://${SERVICE_HOST:-$HOST_IP}/identity/"
    echo "The default users are: admin and demo"
    echo "The password: $ADMIN_PASSWORD"
fi
echo_summary "stack.sh completed in $SECONDS seconds."
