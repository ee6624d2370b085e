# The scripts here run under mpiexec (see tests/test_mpi.py); importing them in
# the pytest process, as --doctest-modules would, would run their fits.
collect_ignore_glob = ["*.py"]
