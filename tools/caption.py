"""Caption audio files in batch: the same as ``mullm caption`` (see docs/captioning.md).

    python tools/caption.py --model runs/quickstart/run/model --input music/ --out captions.jsonl
"""

from __future__ import annotations

import sys

from mullm.cli import main

if __name__ == "__main__":
    sys.exit(main(["caption", *sys.argv[1:]]))
