"""`python -m janus`: the operator CLI, as the `janus` console script runs it."""

import sys

from janus.cli import main

sys.exit(main())
