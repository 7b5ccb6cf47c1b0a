"""``python -m piagent``: the same as the ``piagent`` command."""

from piagent.cli import main

raise SystemExit(main())
