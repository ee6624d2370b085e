"""``python -m sklearn_relu``: see ``python -m sklearn_relu --help``."""

import os
import sys

from ._cli import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        # The reader went away (| head -1): nothing more to say, and nowhere
        # to say it. Standard output goes to /dev/null so that Python's own
        # flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (ValueError, ImportError, OSError, FloatingPointError) as exc:
        # Bad input, a missing extra or a diverged fit: a one-line message,
        # not a traceback.
        print(f"python -m sklearn_relu: error: {exc}", file=sys.stderr)
        sys.exit(1)
