"""``python -m codex_tools`` runs the command line."""

import sys

from codex_tools._cli import main

sys.exit(main())
