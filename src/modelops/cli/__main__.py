"""`python -m modelops.cli`: the same command as `modelops`."""

import sys

from modelops.cli import main

sys.exit(main())
