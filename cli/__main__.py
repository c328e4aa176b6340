"""``python -m cli``: the ``speechstream`` command."""

import sys

from cli.main import main

sys.exit(main())
