"""MPI for the backend: the import that says what to install, and the error a
rank raises when another rank failed."""

__all__ = ["INSTALL_HINT", "RemoteWorkerError", "import_mpi"]

INSTALL_HINT = 'pip install "sklearn-relu[mpi]"  (or: pip install mpi4py mpich)'


def import_mpi():
    """``mpi4py.MPI``, or an ImportError that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f'backend="mpi" needs mpi4py and an MPI library; install them with: '
            f"{INSTALL_HINT}"
        ) from exc
    return MPI


class RemoteWorkerError(RuntimeError):
    """Another rank failed; its own error is reported on that rank."""

