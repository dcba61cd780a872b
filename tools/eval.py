"""Evaluate a model: the same as ``mullm eval`` (see docs/evaluation.md).

    python tools/eval.py --model runs/quickstart/run/model --task mcq --data mcq.csv --out eval/
"""

from __future__ import annotations

import sys

from mullm.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
