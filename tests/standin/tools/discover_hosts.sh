#!/usr/bin/env bash
# Stand-in for DevStack's tools/discover_hosts.sh (tests only). Computes register asynchronously:
# the first call finds none; later calls map the hosts named by STANDIN_COMPUTES (in localrc).
TOP_DIR=$(cd "$(dirname "$0")/.." && pwd)
source "$TOP_DIR/.localrc.auto" 2>/dev/null || true
count=/opt/stack/standin-discover-calls
n=$(( $(cat "$count" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$count"
if [[ $n -lt 2 ]]; then
    echo "Found 0 unmapped computes in cell"
    exit 0
fi
for h in ${STANDIN_COMPUTES//,/ }; do
    echo "Checking host mapping for compute host '$h': 00000000-0000-0000-0000-00000000000$n"
done
