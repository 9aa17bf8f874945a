"""python -m charrnn: see charrnn.cli."""

import sys

from .cli import main

sys.exit(main())
