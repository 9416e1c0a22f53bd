#!/usr/bin/env bash
# Runs one MPI rank inside its namespace pi-eval-<rank> (made by setup.sh) with MPICH forced onto TCP:
#
#   mpiexec -n N bench/netem/rank-wrapper.sh python script.py ...
#
# hydra sets PMI_RANK for every process it starts; the PMI connection to the hydra proxy is an inherited
# file descriptor (PMI_FD), so it crosses the namespace boundary. MPI traffic then goes through pie0:
#   MPIR_CVAR_CH4_NETMOD=ofi, FI_PROVIDER=tcp    the libfabric TCP provider of ch4:ofi
#   MPIR_CVAR_NOLOCAL=1                          no shared memory between "local" ranks
#   FI_TCP_IFACE=pie0                            the shaped interface
set -euo pipefail
rank=${PMI_RANK:?rank-wrapper.sh must be started by mpiexec (PMI_RANK is unset)}
export MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp MPIR_CVAR_NOLOCAL=1 FI_TCP_IFACE=pie0
exec ip netns exec "pi-eval-$rank" "$@"
