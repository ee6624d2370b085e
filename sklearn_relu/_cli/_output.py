"""Where the command line writes a file: checked before the work that makes
it, and replaced only by a complete file."""

import os
from pathlib import Path


def save_atomically(obj, path):
    """Write ``obj`` to ``path`` through a temporary file and ``os.replace``.

    skops.io, or joblib for a ``.joblib`` / ``.pkl`` path (see
    :func:`sklearn_relu._persist.save_model`). Readers never see a partly
    written file, and an earlier file at ``path`` stays as it was unless the
    new one was written completely.
    """
    from .._persist import save_model

    check_writable(path)
    save_model(obj, path)


def check_writable(path):
    """Raise a ValueError naming ``path`` unless a file can be written there:
    checked before a fit, not after it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a directory, not a file name")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(
            f"--out {str(path)!r}: directory {str(parent)!r} does not exist"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"--out {str(path)!r}: directory {str(parent)!r} is not writable"
        )
