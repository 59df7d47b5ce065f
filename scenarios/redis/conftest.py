"""Redis's stories: every scenario here runs with ``--harness-transport redis`` (marker ``redis``).

kombu keeps a message a worker took, and has not acknowledged, in Redis's ``unacked`` hash; it goes back to its
queue only when a worker shuts down warm, or when a consumer's periodic sweep finds it older than
``visibility_timeout`` (1 hour by default; the sweep runs every ``unacked_restore_interval`` x
``unacked_restore_throttle`` seconds: 10 x 10 = 100 s by default in kombu 5.7, and once when a worker starts).
The stories that wait for that make both short (``harness.brokers.redis.base.visibility``) and say what the
defaults would mean.
"""
