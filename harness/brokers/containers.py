"""What the docker providers of every family share: the engine's client, and the labels that let a run remove
the containers a killed run left behind."""

from __future__ import annotations

import os
import socket

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
    removed = []
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=true"}):
        labels = container.labels
        if labels.get(LABEL_HOST) != host or not labels.get(LABEL_PID, "").isdigit():
            continue  # another machine's, or not made by this harness: not ours to judge
        try:
            os.kill(int(labels[LABEL_PID]), 0)
            continue  # its run is still alive (another session in parallel)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        container.remove(force=True)
        removed.append(container.short_id)
    return removed
