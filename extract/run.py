"""The one-time extraction command, kept at the design's path: `python extract/run.py ...` is
`spp-scl extract ...` (also under `accelerate launch extract/run.py ...`). Needs the project installed
(`pip install -e .`, which both set-up commands do)."""

import sys

from spp_scl.cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
