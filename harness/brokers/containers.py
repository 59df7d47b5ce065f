"""What the docker providers of every family share: the engine's client, and the labels that let a run remove
the containers a killed run left behind."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from harness.errors import HarnessError

LABEL = "io.github.celery-failure-harness"
LABEL_PID = f"{LABEL}.pid"
LABEL_HOST = f"{LABEL}.host"


def docker_problem(exc: Exception) -> str:
    host = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    return (
        f"no Docker engine answers at {host} ({type(exc).__name__}); start Docker (scripts/docker-engine starts one "
        "on a machine without), fix DOCKER_HOST, or use --harness-broker local"
    )


def docker_client(timeout: float = 5.0):
    """A docker-py client that has answered a ping, or HarnessError."""
    try:
        import docker
    except ImportError:
        raise HarnessError(
            "the docker provider needs testcontainers: pip install 'celery-failure-harness[docker]'"
        ) from None

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # docker-py raises DockerException, requests' errors, or OSError here
        raise HarnessError(docker_problem(exc)) from None
    return client


def engine_answers(timeout: float = 2.0) -> bool:
    try:
        docker_client(timeout).close()
    except HarnessError:
        return False
    return True


def remove_leftovers(client) -> list[str]:
    """Remove harness containers whose run is gone (its pid no longer lives on this host)."""
    import docker.errors

    removed = []
    host = socket.gethostname()
    # sparse: the labels as the listing gives them, with no inspection of each container, which fails for one that
    # another run (a parallel xdist worker) removed meanwhile (seen in CI: "No such container" at a broker's start).
    for container in client.containers.list(all=True, sparse=True, filters={"label": f"{LABEL}=true"}):
        labels = container.attrs.get("Labels") or {}
        if labels.get(LABEL_HOST) != host or not labels.get(LABEL_PID, "").isdigit():
            continue  # another machine's, or not made by this harness: not ours to judge
        try:
            os.kill(int(labels[LABEL_PID]), 0)
            continue  # its run is still alive (another session in parallel)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            container.remove(force=True)
        except docker.errors.NotFound:  # removed by another run meanwhile
            continue
        removed.append(container.short_id)
    return removed


def ensure_image(client, image: str, problem: Callable[[str], str], pull: bool = True) -> None:
    """Pull ``image`` if the engine does not have it (``pull`` False: an image that is only ever built here), so
    that a failed pull is named as such; ``problem(reason)`` is the one sentence to raise."""
    import docker.errors

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    if not pull:
        raise HarnessError(problem("it is not on the Docker engine"))
    try:
        client.images.pull(image)
    except docker.errors.APIError as exc:
        reason = " ".join(str(exc.explanation or exc).split())[:200]
        raise HarnessError(problem(f"it is not here and the pull failed: {reason}")) from None


def log_tail(container, lines: int = 3) -> str:
    """The last lines of a testcontainers container's log, on one line ("" if it is gone)."""
    try:
        out = container.get_wrapped_container().logs(tail=lines).decode(errors="replace")
    except Exception:  # the container may already be gone
        return ""
    return " | ".join(line.strip() for line in out.splitlines() if line.strip())
