"""``python -m medsam3_web``: what ``medsam3 web`` runs."""

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
