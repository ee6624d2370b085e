"""``python -m sklearn_relu``: see ``python -m sklearn_relu --help``."""

import sys

from ._cli import in_cli_words, main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, ImportError, OSError, FloatingPointError) as exc:
        # Bad input, a missing extra or a diverged fit: a one-line message,
        # not a traceback.
        print(f"python -m sklearn_relu: error: {in_cli_words(str(exc))}", file=sys.stderr)
        sys.exit(1)
