"""Fixtures shared by the end-to-end tests of the ``docker`` provider (bad input, no leaks), and
``environment_kept``.

The harness's own tests that run a stack run the demo app (``harness_stack`` in pyproject.toml).

The end-to-end tests of the docker provider run inner pytest sessions with ``--harness-broker
docker`` on an image that is already on the engine: no image registry is assumed reachable. They are
skipped, saying why, when no engine answers or the image is missing; under ``HARNESS_REQUIRE_DOCKER=1``
(a run that was given an engine, as CI's is) they fail instead, so that coverage is never lost to a skip
unseen. By default the image is the one ``scripts/build-rabbitmq-image`` builds and the container shares
the host's network (what machines whose containers may only use loopback need); ``HARNESS_RABBITMQ_IMAGE`` and
``HARNESS_DOCKER_NETWORK`` choose others.

Each harness container carries the pid of the pytest that made it (``LABEL_PID``), so a test finds
the containers of exactly its own inner run, and removes only those, even while other runs use the
engine.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from docker import DockerClient
from docker.errors import ImageNotFound

from harness.brokers.containers import LABEL, LABEL_HOST, LABEL_PID, docker_client
from harness.errors import HarnessError

LOCAL_IMAGE = "harness-rabbitmq:3-management-local"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def reference_app_importable_in_subprocesses() -> None:
    """The reference app is this repository's, not the installed package's: pytest runs started by these
    tests (in other folders) and their programs import it from the checkout."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def unavailable(reason: str, required_by: str) -> NoReturn:
    """Skip, saying why; or fail, where the environment variable ``required_by`` says the run has the thing
    (scripts/clean-room sets them for what it was given: a skip there would lose coverage without a word)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} ({required_by}=1: this run was meant to have it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def rabbitmq_4_available() -> None:
    """The RabbitMQ 4 root scripts/build-rabbitmq-root makes, and root to chroot into it; the test is skipped,
    saying why, without them (failed under ``HARNESS_REQUIRE_RABBITMQ_4=1``)."""
    from harness.brokers.rabbitmq.local import rabbitmq_4_root

    if not (rabbitmq_4_root() / ".harness-complete").is_file() or os.geteuid() != 0:
        reason = "RabbitMQ 4 needs root and the root scripts/build-rabbitmq-root makes"
        unavailable(reason, "HARNESS_REQUIRE_RABBITMQ_4")


@dataclass(frozen=True)
class DockerSetup:
    """An engine that answered, and the RabbitMQ image and network the docker cases run with."""

    client: DockerClient
    image: str
    network: str

    def args(self, image: str | None = None) -> tuple[str, ...]:
        """The inner run's provider options, with ``image`` instead of the usual one if given."""
        return (
            "--harness-broker", "docker", "--harness-rabbitmq-image", image or self.image,
            "--harness-docker-network", self.network,
        )  # fmt: skip


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerClient]:
    """A client of a Docker engine that answered; the test is skipped, saying why, if none does (failed under
    ``HARNESS_REQUIRE_DOCKER=1``)."""
    try:
        client = docker_client()
    except HarnessError as error:
        unavailable(f"the docker cases need a Docker engine: {error}", "HARNESS_REQUIRE_DOCKER")
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_setup(docker_engine: DockerClient) -> DockerSetup:
    """The engine, and the image already on it; the test is skipped, saying why, if the image is missing."""
    image = os.environ.get("HARNESS_RABBITMQ_IMAGE") or LOCAL_IMAGE
    try:
        docker_engine.images.get(image)
    except ImageNotFound:
        unavailable(
            f"the docker cases need the image {image}: build it with scripts/build-rabbitmq-image {image}",
            "HARNESS_REQUIRE_DOCKER",
        )
    return DockerSetup(docker_engine, image, os.environ.get("HARNESS_DOCKER_NETWORK") or "host")


@dataclass
class RunContainers:
    """Harness containers of inner runs, found by the pytest pid they are labelled with."""

    client: DockerClient
    pids: set[int] = field(default_factory=set)

    def _list(self, pid: int) -> list:
        labels = [f"{LABEL}=true", f"{LABEL_PID}={pid}", f"{LABEL_HOST}={socket.gethostname()}"]
        return self.client.containers.list(all=True, filters={"label": labels})

    def of(self, pid: int) -> list[str]:
        """The containers the run whose pytest had ``pid`` left, described (id, image, status)."""
        self.pids.add(pid)
        return [f"{c.short_id} ({c.attrs['Config']['Image']}, {c.status})" for c in self._list(pid)]

    def remove(self) -> None:
        """Remove what the runs asked about left (and only that: other runs may be using the engine)."""
        for pid in self.pids:
            for container in self._list(pid):
                container.remove(force=True)


@pytest.fixture
def run_containers(docker_engine: DockerClient) -> Iterator[RunContainers]:
    """Looks up the containers of the test's inner runs; removes any of them left at teardown."""
    containers = RunContainers(docker_engine)
    yield containers
    containers.remove()


@pytest.fixture
def environment_kept() -> Iterator[None]:
    """The process's environment as it was, after a test that calls what programs call on themselves
    (``harness.launcher.configure`` sets the variables Celery reads, ``CELERY_BROKER_URL``...)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def pytest_configure(config: pytest.Config) -> None:
    """These tests interrupt inner runs with SIGINT, as a terminal's Ctrl-C does. Started as a background job
    (``scripts/tests ... &``, ``nohup``), this process ignores SIGINT and so would every run it starts, which
    then cannot be interrupted: give it back Python's handler (its children get the default, not the ignore)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def screenshots(pytestconfig: pytest.Config) -> Path:
    """Where a test saves what a reader would see: ``screenshots/`` of this run's report folder, which CI keeps
    among its artefacts."""
    from harness import options

    folder = Path(options.get(pytestconfig, "harness_report"))
    folder = folder if folder.is_absolute() else pytestconfig.rootpath / folder
    (folder / "screenshots").mkdir(parents=True, exist_ok=True)
    return folder / "screenshots"
