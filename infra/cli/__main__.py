"""`python -m infra.cli`: the `bessmon` command."""

import sys

from infra.cli import main

sys.exit(main())
