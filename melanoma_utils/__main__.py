"""``python -m melanoma_utils``: see :mod:`melanoma_utils.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
