# Locates MPI for the build. Our own glue, no foreign source.
# Order: the `mpich` PyPI wheel installed in the (possibly isolated) build environment, then the
# system's MPI through CMake's FindMPI. Defines the imported target pipeinfer::mpi,
# PIPEINFER_MPI_RPATH (the installed extension's runpath: relative to the extension, where the mpich
# wheel's libmpi lies next to it in the same site-packages) and PIPEINFER_MPI_BUILD_RPATH (the build
# tree's: the mpich the build found, which may be a temporary build environment).
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import importlib.metadata as m, os; d=m.distribution('mpich'); p=os.path.realpath(d.locate_file('../../../include/mpi.h')); print(os.path.dirname(os.path.dirname(p)))"
  OUTPUT_VARIABLE _pi_mpich_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _pi_mpich_rc ERROR_QUIET)

if(_pi_mpich_rc EQUAL 0 AND EXISTS "${_pi_mpich_prefix}/include/mpi.h")
  find_library(_pi_libmpi NAMES mpi libmpi.so.12 PATHS "${_pi_mpich_prefix}/lib" NO_DEFAULT_PATH)
  if(NOT _pi_libmpi)
    message(FATAL_ERROR "mpich wheel found at ${_pi_mpich_prefix} but libmpi is missing in its lib/")
  endif()
  add_library(pipeinfer::mpi INTERFACE IMPORTED)
  target_include_directories(pipeinfer::mpi INTERFACE "${_pi_mpich_prefix}/include")
  target_link_libraries(pipeinfer::mpi INTERFACE "${_pi_libmpi}")
  # <prefix>/lib/pythonX.Y/site-packages/pipeinfer/_core.so -> <prefix>/lib (the mpich wheel's
  # libmpi.so.12) is three levels up; no absolute path of the build machine in the installed file.
  set(PIPEINFER_MPI_RPATH "$ORIGIN/../../..")
  set(PIPEINFER_MPI_BUILD_RPATH "${_pi_mpich_prefix}/lib")
  message(STATUS "pipeinfer: MPI from the mpich wheel at ${_pi_mpich_prefix}")
else()
  find_package(MPI REQUIRED COMPONENTS CXX)
  add_library(pipeinfer::mpi INTERFACE IMPORTED)
  target_link_libraries(pipeinfer::mpi INTERFACE MPI::MPI_CXX)
  set(PIPEINFER_MPI_RPATH "")
  set(PIPEINFER_MPI_BUILD_RPATH "")
  message(STATUS "pipeinfer: system MPI")
endif()
