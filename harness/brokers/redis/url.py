"""The ``url`` Redis provider: a server that already runs, named by its ``redis://`` URL. The harness never
stops, freezes or reconfigures it (those scenarios skip); scenarios share the URL's database in turns."""

from __future__ import annotations

import redis

from harness.brokers.redis.base import RedisBroker, RedisEndpoint, parse_redis_url
from harness.errors import HarnessError


class UrlRedis(RedisBroker):
    kind = "url"
    owned = False

    def __init__(self, url: str, connect_timeout: float = 3.0) -> None:
        self._endpoint = parse_redis_url(url)
        self.connect_timeout = connect_timeout

    @classmethod
    def from_options(cls, options) -> UrlRedis:
        return cls(options.url or "")

    @classmethod
    def saved(cls, url: str, management_url: str | None = None) -> UrlRedis:
        """The server of a saved state (``harness up``'s file), to read from: nothing is checked or started."""
        return cls(url)

    @classmethod
    def available(cls, options) -> bool:
        return bool(options.url)

    @property
    def endpoint(self) -> RedisEndpoint:
        return self._endpoint

    def start(self) -> None:
        where = self._endpoint.redacted()
        try:
            with self._endpoint.client(timeout=self.connect_timeout) as client:
                client.ping()
        except redis.AuthenticationError:
            raise HarnessError(f"Redis at {where} refused the password; give the right one in the URL") from None
        except redis.ResponseError as error:
            raise HarnessError(f"Redis at {where} refused the harness: {error}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            raise HarnessError(
                f"no Redis answers at {where} ({type(error).__name__}); start it, or fix --harness-broker-url"
            ) from None

    def close(self) -> None:
        """Nothing to stop: the server is not the harness's."""
