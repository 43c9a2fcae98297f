"""``python -m ocistore``: the ``ocistore`` command."""

import sys

from ocistore.cli import main

sys.exit(main())
