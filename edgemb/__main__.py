"""`python -m edgemb` runs the CLI."""

import sys

from edgemb.cli import main

sys.exit(main())
