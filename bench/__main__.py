"""Entry point so the suite runs as ``python -m bench``."""

from bench.cli import main

raise SystemExit(main())
