"""``python -m melanoma_utils``: see :mod:`melanoma_utils.cli.app`."""

import sys

from .cli.app import main

if __name__ == "__main__":
    sys.exit(main())
