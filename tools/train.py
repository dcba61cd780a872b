#!/usr/bin/env python
"""Thin wrapper: ``python tools/train.py --config C [--resume DIR] [a.b=value ...]``."""

from __future__ import annotations

import sys

from mullm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
