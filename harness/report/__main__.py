"""``python -m harness.report durations|merge``: the tools of a sharded run (``harness.shards``)."""

from harness.shards import main

raise SystemExit(main())
