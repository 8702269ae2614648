"""``python -m prodcat.cli``: the same as the ``prodcat`` command."""

import sys

from prodcat.cli import main

sys.exit(main())
