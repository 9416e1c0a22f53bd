// Removes the names of MPICH's per-job shared-memory segments from /dev/shm once every local rank has
// them mapped, so that a job that ends by a kill leaves no segment behind. Owns only that clean-up;
// it knows nothing about MPI calls (transport-mpi.cpp decides when it is safe).
//
// Why: MPICH (ch4, posix shm) creates /dev/shm/mpich_shm_<world>_<node> (about 2-4 MiB per job and
// node) during MPI_Init and unlinks it only in MPI_Finalize (ch4/shm/posix/posix_init.c,
// MPIDI_POSIX_mpi_finalize_hook). A rank killed by a signal, or a job ended by MPI_Abort, never gets
// there. Every local rank opens the segment by name during its MPI_Init (MPL_initshm_open) and never
// again; after that the name is only needed for the unlink at finalisation, whose result MPICH
// ignores. Unlinking the name early keeps the mappings valid and lets the kernel free the memory when
// the last rank of the job exits, however it exits.
#pragma once
#include <string>
#include <vector>

namespace pipeinfer {

// Unlinks every /dev/shm file this process has mapped whose name starts with "mpich_shm_" or
// "mpich_vci_" (read from /proc/self/maps). Returns the names it removed (files already gone are not
// errors). Never throws: a failure leaves the segment for MPI_Finalize as before.
std::vector<std::string> unlink_mapped_mpich_shm();

} // namespace pipeinfer
