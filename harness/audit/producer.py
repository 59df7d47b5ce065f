"""How the audit sends: the probe (or the team's real task) through the user's app, from the test process.

The app is imported here as the launcher imports it, the probe is registered on it exactly as on the
workers (``harness.probe``: routed like the task it imitates, with its options), and each send goes
through the app's own ``apply_async`` (``harness.producers.DirectSender``), so its routing, serializer,
delivery mode and publish retry policy are the app's. Each probe is sent with the length of its work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.probe import PROBE_NAME, ProbeError, register_probe
from harness.producers import DirectProducer, DirectSender, load_app
from harness.sent import Sent

if TYPE_CHECKING:
    from harness.stack import AppStack


@dataclass(frozen=True)
class AuditProducer:
    celery_app: str
    like: str | None = None  # the task the probe imitates
    task: str = PROBE_NAME  # what is sent: the probe, or a real task the team says is safe
    args: tuple[Any, ...] = ()

    def bind(self, stack: AppStack) -> AuditSender:
        app = load_app(self.celery_app, stack.cwd, stack.vhost.url)
        try:
            register_probe(app, self.like)
        except ProbeError as error:
            raise HarnessError(f"--audit-like: {error}") from None
        return AuditSender(DirectSender(DirectProducer(self.task, self.args), app, stack), self.task == PROBE_NAME)


class AuditSender:
    """``send(seconds)``: one probe that works that long (a real task is sent with its own arguments)."""

    def __init__(self, direct: DirectSender, probe: bool) -> None:
        self.direct = direct
        self.probe = probe

    def send(self, seconds: float = 0.0, hold: str | None = None, connection: Any = None) -> Sent:
        """A probe that works ``seconds``, or until the file ``hold`` exists (at most ``seconds``); on
        ``connection`` if given (a thread's own)."""
        if self.probe:
            return self.direct.send_call((round(seconds, 3),), {"hold": hold} if hold else {}, connection)
        spec = self.direct.spec
        return self.direct.send_call(tuple(spec.args), dict(spec.kwargs), connection)

    def connection(self) -> Any:
        return self.direct.connection()

    def send_many(self, count: int, seconds: float = 0.0) -> list[Sent]:
        return [self.send(seconds) for _ in range(count)]

    def close(self) -> None:
        self.direct.close()
