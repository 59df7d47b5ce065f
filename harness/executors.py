"""mirakuru executors whose process tag cannot match another process's pid.

mirakuru marks every process it starts with an environment variable (`mirakuru_uuid`, inherited by
children: supervisord's programs, a node's Erlang VM) and, when *any* Python process that imported
mirakuru exits, SIGKILLs every process whose tag *contains* that exiting process's pid as a substring
(`mirakuru.base.cleanup_subprocesses`; `processes_with_env` matches with `in`). The default tag is
"<pid>:<uuid4>", full of digits, so a short-lived process of another run (an xdist worker, a
`harness ctl` call, a neighbour's pytest) whose pid happens to appear in it kills this run's broker or
workers. A tag without digits never contains a pid; mirakuru's own stop (which looks the tag up
whole) still finds every child. mirakuru has no option for this, hence the private attribute.
"""

from __future__ import annotations

import secrets
import string

from mirakuru.base import SimpleExecutor

_LETTERS = string.ascii_lowercase


def without_pid_in_tag(executor: SimpleExecutor) -> SimpleExecutor:
    """Give `executor` a digit-free tag (before it starts); returns it for chaining."""
    executor._uuid = "celery-failure-harness-" + "".join(secrets.choice(_LETTERS) for _ in range(24))
    return executor
