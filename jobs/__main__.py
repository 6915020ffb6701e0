"""``python -m jobs``: the portable way to call the command line."""

import sys

from jobs.cli import main

sys.exit(main())
