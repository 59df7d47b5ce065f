"""Redis settings a scenario or the audit names, as plain data: importing them costs no Redis client (the plugin
reads them at load, and redis-py's import was a fifth of the plugin's)."""

from __future__ import annotations

PERSISTENCE: dict[str, dict[str, str]] = {
    "off": {"save": "", "appendonly": "no"},
    # Redis's own default snapshots (after an hour with a change, 5 min with 100, a minute with 10000): a crash
    # loses what came after the last one; ``snapshot()`` takes one now.
    "rdb": {"save": "3600 1 300 100 60 10000", "appendonly": "no"},
    "aof-everysec": {"save": "", "appendonly": "yes", "appendfsync": "everysec"},
    "aof-always": {"save": "", "appendonly": "yes", "appendfsync": "always"},
}
EVICTION_POLICIES = ("noeviction", "allkeys-lru", "volatile-lru", "allkeys-random", "volatile-ttl")


def visibility(timeout: float, sweep_every: int = 1) -> dict[str, float]:
    """``broker_transport_options`` under which a message a worker holds unacknowledged goes back to its queue
    ``timeout`` seconds after it was taken, at a sweep every ``sweep_every`` seconds: kombu's defaults are one
    hour and about 100 s (``unacked_restore_interval`` 10 x ``unacked_restore_throttle`` 10, kombu 5.7), too long
    for a scenario to wait. Use it as ``@pytest.mark.celery_config(broker_transport_options=visibility(4))``."""
    return {"visibility_timeout": timeout, "unacked_restore_interval": sweep_every, "unacked_restore_throttle": 1}
