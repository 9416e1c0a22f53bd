#!/usr/bin/env bash
# Slow links for real: N network namespaces (one per MPI rank) joined to a bridge by veth pairs, each
# rank's link shaped on egress with `tc qdisc ... netem rate R delay D` (or, on kernels built without
# netem, `tbf rate R`: bandwidth only, no added delay; the script says which it used).
#
#   sudo bench/netem/setup.sh N RATE DELAY      e.g.  sudo bench/netem/setup.sh 2 100mbit 2ms
#
# Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for `ip netns add`). Everything it creates is named pi-eval-*:
#   namespaces pi-eval-hub (holds the bridge pi-eval-br) and pi-eval-0 .. pi-eval-(N-1);
#   in pi-eval-i the interface pie0 with address 198.18.0.(i+1)/24 (RFC 2544 benchmark range).
# Traffic between the ranks stays inside these namespaces; the root namespace gets no address or route.
# Run bench/netem/teardown.sh to remove it all (setup.sh runs it first, so it can be re-run to change
# the link). Prints one line `shaping=netem|tbf|none` on stdout at the end.
#
# Run ranks inside with bench/netem/rank-wrapper.sh (see its header), or through
# `pipeinfer bench links`, which does all of this itself.
set -euo pipefail

N=${1:?usage: setup.sh N_RANKS RATE DELAY   (e.g. 2 100mbit 2ms; RATE/DELAY may be '-' for none)}
RATE=${2:--}
DELAY=${3:--}
PREFIX=pi-eval
here=$(cd "$(dirname "$0")" && pwd)

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: needs root (network namespaces and tc need CAP_NET_ADMIN/CAP_SYS_ADMIN); run it with sudo" >&2
    exit 2
fi
for tool in ip tc; do
    if ! command -v "$tool" >/dev/null; then
        echo "setup.sh: '$tool' not found; install it: apt-get install -y iproute2" >&2
        exit 2
    fi
done
if ! [[ $N =~ ^[0-9]+$ ]] || (( N < 1 || N > 32 )); then
    echo "setup.sh: N_RANKS must be an integer in [1, 32], got '$N'" >&2
    exit 2
fi

"$here/teardown.sh" >/dev/null 2>&1 || true

ip netns add "$PREFIX-hub"
ip -n "$PREFIX-hub" link add "$PREFIX-br" type bridge
ip -n "$PREFIX-hub" link set "$PREFIX-br" up
ip -n "$PREFIX-hub" link set lo up

# Which qdisc can shape: netem (rate + delay) if the kernel has it, else tbf (rate only).
shaping=none
probe() {  # probe QDISC-ARGS...: can this qdisc be attached? (tried on the bridge, then removed)
    if ip netns exec "$PREFIX-hub" tc qdisc add dev "$PREFIX-br" root "$@" 2>/dev/null; then
        ip netns exec "$PREFIX-hub" tc qdisc del dev "$PREFIX-br" root
        return 0
    fi
    return 1
}
if [[ $RATE != - || $DELAY != - ]]; then
    if probe netem delay 1ms; then
        shaping=netem
    elif [[ $RATE != - ]] && probe tbf rate 1gbit burst 64kb latency 100ms; then
        shaping=tbf
        echo "setup.sh: the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM); shaping the rate with tbf," \
             "the delay '$DELAY' is NOT applied" >&2
    else
        echo "setup.sh: neither netem nor tbf can be attached: links stay unshaped" >&2
    fi
fi

for ((i = 0; i < N; i++)); do
    ns="$PREFIX-$i"
    ip netns add "$ns"
    ip link add "pie$i-r" netns "$ns" type veth peer name "pie$i-h" netns "$PREFIX-hub"
    ip -n "$ns" link set "pie$i-r" name pie0
    ip -n "$ns" addr add "198.18.0.$((i + 1))/24" dev pie0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set pie0 up
    ip -n "$PREFIX-hub" link set "pie$i-h" master "$PREFIX-br"
    ip -n "$PREFIX-hub" link set "pie$i-h" up
    case $shaping in
    netem)
        args=()
        [[ $RATE != - ]] && args+=(rate "$RATE")
        [[ $DELAY != - ]] && args+=(delay "$DELAY")
        # a queue long enough for a few MB of logits at the lowest rate
        ip netns exec "$ns" tc qdisc add dev pie0 root netem "${args[@]}" limit 100000
        ;;
    tbf)
        # burst: one 64 KiB segment train; latency: how long a packet may wait before being dropped
        ip netns exec "$ns" tc qdisc add dev pie0 root tbf rate "$RATE" burst 64kb latency 2000ms
        ;;
    esac
done

# Check every rank reaches rank 0 over the bridge.
for ((i = 1; i < N; i++)); do
    if ! ip netns exec "$PREFIX-$i" ping -c 1 -W 2 198.18.0.1 >/dev/null 2>&1; then
        if command -v ping >/dev/null; then
            echo "setup.sh: namespace $PREFIX-$i cannot reach 198.18.0.1" >&2
            exit 1
        fi
    fi
done
echo "shaping=$shaping"
