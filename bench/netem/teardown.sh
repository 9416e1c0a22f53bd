#!/usr/bin/env bash
# Removes everything bench/netem/setup.sh created: the namespaces pi-eval-* (deleting a namespace
# deletes its veth ends, their qdiscs and the bridge). Needs root. Safe to run when nothing exists.
set -uo pipefail
if [[ $(id -u) -ne 0 ]]; then
    echo "teardown.sh: needs root (ip netns del); run it with sudo" >&2
    exit 2
fi
status=0
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^pi-eval-' || true); do
    ip netns del "$ns" || status=1
done
exit $status
