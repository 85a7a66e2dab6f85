"""``python -m runtime.cli``: the ``runtime`` command."""

import sys

from runtime.cli import main

sys.exit(main())
