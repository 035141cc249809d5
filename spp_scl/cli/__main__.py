"""`python -m spp_scl.cli VERB ...` is `spp-scl VERB ...` (for `accelerate launch -m spp_scl.cli extract ...`)."""

import sys

from spp_scl.cli import main

sys.exit(main())
