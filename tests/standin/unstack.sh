#!/usr/bin/env bash
# Stand-in for DevStack's unstack.sh (tests only): stops "services".
[[ $EUID -eq 0 ]] && { echo "unstack.sh: not as root"; exit 1; }
echo "Stopping services (stand-in)"
rm -f /opt/stack/standin-stacked
