"""What an MPI launcher (``mpiexec``) tells the processes it starts, read from
the environment before MPI starts: whether there is one, and this process's
rank."""

import os

#: Environment variables that MPI launchers set in the processes they start.
MPI_LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")

# The rank an MPI launcher gave this process.
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def under_mpi_launcher():
    """Whether an MPI launcher started this process."""
    return any(name in os.environ for name in MPI_LAUNCHER_VARIABLES)


def launcher_rank():
    """This process's rank under an MPI launcher, else None."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None
