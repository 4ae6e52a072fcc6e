"""``python -m rtgate.migrate check …`` is ``rtgate migrate check …``."""

from rtgate.migrate.cli import main

raise SystemExit(main())
