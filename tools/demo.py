"""Chat with a model in the browser: the same as ``mullm demo`` (see docs/demo.md).

    python tools/demo.py --model offline-default
"""

from __future__ import annotations

import sys

from mullm.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
