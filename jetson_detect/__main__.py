"""``python -m jetson_detect``: see ``jetson_detect.cli``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
