"""Entry point of a local-engine child process: `python -m avatarv.curate.worker` (JSON in, JSON lines out)."""

import sys

from .engines import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())
