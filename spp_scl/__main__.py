"""`python -m spp_scl VERB ...` is `spp-scl VERB ...`."""

import sys

from spp_scl.cli import main

sys.exit(main())
