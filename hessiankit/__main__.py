"""``python -m hessiankit``: the command line (see :mod:`hessiankit.cli`)."""

import sys

from hessiankit.cli import main

if __name__ == "__main__":
    sys.exit(main())
