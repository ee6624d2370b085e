"""Saving and loading fitted models: skops.io by default, joblib on request.

Loading a joblib (pickle) file runs whatever code the file asks for, so it is
only safe for files you made yourself. ``skops.io`` stores the model as data
and, when loading, refuses every type outside a trusted set: scikit-learn's
and NumPy's, plus the two types of this package a fitted model holds
(:data:`TRUSTED_TYPES`). Files from elsewhere should be ``.skops`` files.
"""

import glob
import os
import socket
import tempfile
import zipfile
from pathlib import Path

__all__ = ["TRUSTED_TYPES", "atomic_write", "model_format", "save_model", "load_model"]

def _package_types():
    """The estimator, its record, and every compressor of this package: a
    fitted model keeps the compressor its workers' states belong to (for
    ``warm_start``). All are plain data (no code runs when they are loaded)."""
    from . import compression
    from .compression import Compressor

    compressors = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in vars(compression).values()
        if isinstance(cls, type) and issubclass(cls, Compressor) and cls is not Compressor
    )
    return (
        "sklearn_relu._estimator.ReLURegressor",
        "sklearn_relu.backends._base.CommunicationRecord",
        *compressors,
        # ReLURegressor(checkpoint=Path(...)): a path is only its string.
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
    )


# What a fitted ReLURegressor (alone or in a Pipeline) holds beyond the types
# skops trusts by default.
TRUSTED_TYPES = _package_types()

_JOBLIB_SUFFIXES = (".joblib", ".pkl", ".pickle")


def model_format(path):
    """``"joblib"`` for a ``.joblib``, ``.pkl`` or ``.pickle`` path, else ``"skops"``."""
    return "joblib" if Path(path).suffix.lower() in _JOBLIB_SUFFIXES else "skops"


def _dump(model, path, file_format):
    if file_format == "joblib":
        import joblib

        joblib.dump(model, path)
    else:
        import skops.io

        skops.io.dump(model, path)


def save_model(model, path):
    """Write ``model`` to ``path`` in :func:`model_format`, atomically.

    The model goes to a temporary file next to ``path`` that replaces ``path``
    only once complete: readers never see a partly written file, and an
    earlier file at ``path`` stays as it was if writing fails.
    """
    atomic_write(path, lambda temporary: _dump(model, temporary, model_format(path)))


def atomic_write(path, write):
    """Call ``write(temporary)`` to fill a temporary file next to ``path``, then
    move it over ``path`` in one step (``os.replace``).

    Readers see the old file or the complete new one, never a part; a writer
    killed midway leaves a temporary file named after its host and process,
    which the next write to ``path`` removes once that process is gone.
    """
    path = Path(path)
    _remove_stale_temporaries(path)
    fd, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"
    )
    os.close(fd)
    try:
        # mkstemp makes the file private; give it the permissions of a file
        # created the usual way.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# Temporary files are named after the writing host and process, so that one
# left by a writer killed mid-save (kill -9) is recognised and removed.
def _temporary_prefix(path):
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


def _remove_stale_temporaries(path):
    mine = f".{path.name}.{socket.gethostname()}."
    for leftover in path.parent.glob(f"{glob.escape(mine)}*.tmp"):
        pid = leftover.name[len(mine) :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # its writer is gone: nothing will finish it
            leftover.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def load_model(path, *, trusted=()):
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or Path
        A ``.skops`` file (or any suffix but joblib's), or a ``.joblib`` /
        ``.pkl`` file, which is unpickled: only load those from a source you
        trust.
    trusted : sequence of str, default=()
        Type names to trust in a skops file beyond scikit-learn's, NumPy's and
        :data:`TRUSTED_TYPES`.

    Raises
    ------
    ValueError
        If a skops file holds a type that is not trusted.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    if model_format(path) == "joblib":
        import joblib

        try:
            model = joblib.load(path)
        except Exception as error:  # whatever a damaged pickle raises
            raise ValueError(
                f"model file {str(path)!r} cannot be read as a joblib file "
                f"({type(error).__name__}: {error}); is it truncated, or another "
                "kind of file?"
            ) from None
        return _checked_model(path, model)
    import skops.io

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            start = file.read(4)
        raise ValueError(
            f"model file {str(path)!r} is "
            + (
                "a truncated or damaged skops file (its zip archive is incomplete)"
                if start == b"PK\x03\x04"
                else "not a skops file (a .skops model is a zip archive); a "
                "joblib model needs the suffix .joblib or .pkl"
            )
        )
    allowed = set(TRUSTED_TYPES) | set(trusted)
    try:
        found = skops.io.get_untrusted_types(file=path)
    except Exception as error:  # a zip archive, but not skops's
        raise ValueError(
            f"model file {str(path)!r} is a zip archive but not a skops model "
            f"({type(error).__name__}: {error})"
        ) from None
    refused = sorted(set(found) - allowed)
    if refused:
        raise ValueError(
            f"{path} holds types that are not trusted: {', '.join(refused)}. "
            "Load it only if you trust where it came from (--trust TYPE, or "
            "load_model(path, trusted=[...]))"
        )
    return _checked_model(path, skops.io.load(path, trusted=found))


def _checked_model(path, model):
    if not hasattr(model, "predict"):
        raise ValueError(
            f"model file {str(path)!r} holds a {type(model).__name__}, not a fitted model"
        )
    return model
