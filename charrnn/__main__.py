"""python -m charrnn: see charrnn.cli."""

import sys

try:
    from .cli import main
except ValueError as e:  # a bad CHARRNN_* setting, found while the limits load
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

sys.exit(main())
