"""``python -m cnn_study`` is the ``cnn-study`` command."""

import sys

from .cli import main

sys.exit(main())
