"""``python -m modelpilot_exporters -f FILE`` = ``modelpilot-export -f FILE``."""

import sys

from .cli import main

sys.exit(main())
