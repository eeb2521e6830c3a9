#!/usr/bin/env bash
# Stand-in for DevStack's clean.sh (tests only).
[[ $EUID -eq 0 ]] && { echo "clean.sh: not as root"; exit 1; }
echo "Cleaning up (stand-in)"
touch /opt/stack/standin-cleaned
