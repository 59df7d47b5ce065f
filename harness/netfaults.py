"""Network faults between one program of the stack and the broker: blackhole, reset, strand, latency, partition.

Design, and why it gives the truest fault here. Every supervised program gets its own small TCP relay
(``FaultProxy``, in the harness's process) on a loopback port of its own; the launcher hands the program a
broker URL that points at that port. The program's AMQP connections then run over a real socket whose
far end the harness controls, whatever broker is behind it (local node, container, warm node or a
``url`` broker the harness does not own), so every call below is the same on every provider:

- ``blackhole(name)``: kernel rules (``iptables`` on ``lo``) drop every packet to and from that program's
  relay port. Nothing answers and nothing is refused: the program's sockets stay open, its writes sit in
  the kernel's retransmit queue, its new connects hang on SYN. That is a half-open connection, the fault
  behind "the worker is alive but stopped consuming" reports; only the kernel can make it (a relay that
  merely stops forwarding still ACKs at the TCP level, which a client reads as a live peer). The relay's
  own connection to the broker stays up, so the broker sees what it would see: a client that went
  silent (it closes it when heartbeats are missed, and the program is not told, as in real life).
- ``reset(name)``: the relay aborts every connection of that program with a TCP RST (``SO_LINGER`` 0),
  on both sides: a NAT or load balancer dropping its state, a firewall cutting flows. New connects work.
- ``strand(name)``: the program's open connections go dead in both directions while both ends stay open, and
  new connections work: a NAT or load balancer that lost a flow's state, a failover that left the old address
  behind. What the program already sent is gone, and so is what the broker answers (a Redis ``BRPOP`` that was
  waiting pops a message into nowhere); the program learns of it only from a timeout of its own. Made in the
  relay, not the kernel: a blackhole would stop new connections too, and the TCP ACKs the relay still gives
  are what such a middlebox gives.
- ``latency(name, ms=...)``: the relay holds every chunk for ``ms`` in each direction (the kernel has no
  ``netem`` qdisc here, so latency has to be in user space; ordering and throughput are kept).
- ``partition(*names)``: several programs blackholed at once (one mark on the timeline).

Only the harness's own relay ports are ever matched, never the broker's port (the system broker's 5672
included) or another address; every rule carries the comment ``celery-failure-harness pid=<pid>``, so
the block's exit, the stack's close (pass, failure, Ctrl-C) and ``python -m harness down`` (rules whose
pid is dead) remove exactly the harness's rules. No library does this: Toxiproxy's server is not
installable here (not in Debian, only an old client on PyPI), and a relay of ~150 lines of asyncio is
easier to reason about than a sidecar daemon; the kernel does the part a relay cannot fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from harness.errors import HarnessError
from harness.faults import Fault, NetworkFault, NetworkHealed
from harness.ports import free_ports

RULE_TAG = "celery-failure-harness"
CHAIN = "INPUT"  # loopback traffic passes OUTPUT then INPUT on lo: dropping it in INPUT is enough


def rule_comment(pid: int | None = None) -> str:
    return f"{RULE_TAG} pid={os.getpid() if pid is None else pid}"


# -- the relay ---------------------------------------------------------------------------------------


class _Side(asyncio.Protocol):
    """One end of a relayed connection (the program's, or the broker's)."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[float, bytes]] = deque()  # chunks held for latency, due times ascending
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        with contextlib.suppress(OSError):
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.relay.forward(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost(self)


class _Relay:
    """A program's connection relayed to the broker; chunks delayed by the proxy's latency."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self)
        self.upstream = _Side(self)
        self.early: list[bytes] = []  # what the program sent before the broker's side was connected
        self.closed = False
        self.stranded = False

    def peer(self, side: _Side) -> _Side:
        return self.upstream if side is self.client else self.client

    def forward(self, side: _Side, data: bytes) -> None:
        if self.stranded:  # the flow is dead: nothing crosses, in either direction
            return
        target = self.peer(side)
        if target.transport is None:
            self.early.append(data)
            return
        delay = self.proxy.latency_s
        if delay <= 0 and not target.pending:
            target.transport.write(data)
            return
        loop = asyncio.get_running_loop()
        target.pending.append((loop.time() + delay, data))
        if target.timer is None:
            target.timer = loop.call_at(target.pending[0][0], self._drain, target)

    def _drain(self, target: _Side) -> None:
        loop = asyncio.get_running_loop()
        target.timer = None
        while target.pending and target.pending[0][0] <= loop.time():
            _, data = target.pending.popleft()
            if target.transport is not None and not target.transport.is_closing():
                target.transport.write(data)
        if target.pending:
            target.timer = loop.call_at(target.pending[0][0], self._drain, target)

    def upstream_ready(self) -> None:
        assert self.upstream.transport is not None
        for data in self.early:
            self.forward(self.client, data)
        self.early.clear()

    def lost(self, side: _Side) -> None:
        """One side closed: close the other once what it is owed is written (as a TCP peer would see a FIN); a
        stranded flow tells the other side nothing (its FIN is lost with the rest), the relay only forgets it."""
        if self.closed:
            return
        if self.stranded:
            self.closed = True
            self.proxy.relays.discard(self)
            self.proxy.stranded.add(self)  # its other end stays open until the relay closes (see _close)
            return
        self.closed = True
        self.proxy.relays.discard(self)
        other = self.peer(side)
        if other.transport is not None and not other.pending:
            other.transport.close()
        elif other.transport is not None:  # latency: the FIN follows the held data
            due = other.pending[-1][0]
            asyncio.get_running_loop().call_at(due, other.transport.close)

    def abort(self) -> None:
        """Cut both sides with a TCP RST."""
        self.closed = True
        self.proxy.relays.discard(self)
        for side in (self.client, self.upstream):
            if side.timer is not None:
                side.timer.cancel()
            if side.transport is not None:
                with contextlib.suppress(OSError):
                    side.transport.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                side.transport.abort()


class FaultProxy:
    """A TCP relay on ``127.0.0.1:port`` to the broker, for one program."""

    def __init__(self, program: str, upstream: tuple[str, int], loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.program = program
        self.upstream = upstream
        self.port = port
        self.latency_s = 0.0
        self.relays: set[_Relay] = set()
        self.stranded: set[_Relay] = set()  # stranded flows one end of which closed: the other end is still open
        self.connections_total = 0
        self._loop = loop
        self._server: asyncio.AbstractServer | None = None

    async def _start(self) -> None:
        self._server = await self._loop.create_server(self._accepted, "127.0.0.1", self.port, reuse_address=True)

    def _accepted(self) -> _Side:
        relay = _Relay(self)
        self.relays.add(relay)
        self.connections_total += 1
        self._loop.create_task(self._connect_upstream(relay))
        return relay.client

    async def _connect_upstream(self, relay: _Relay) -> None:
        try:
            await self._loop.create_connection(lambda: relay.upstream, *self.upstream)
        except OSError:  # the broker refuses (it is down): the program's connection is reset, the nearest a
            relay.abort()  # relay gets to "connection refused" once the kernel has accepted the connection
            return
        if relay.closed:  # the program went away meanwhile
            assert relay.upstream.transport is not None
            relay.upstream.transport.close()
            return
        relay.upstream_ready()

    async def _strand(self) -> int:
        relays = [relay for relay in self.relays if not relay.stranded]
        for relay in relays:
            relay.stranded = True
        return len(relays)

    async def _reset(self) -> int:
        relays = list(self.relays)
        for relay in relays:
            relay.abort()
        return len(relays)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for relay in [*self.relays, *self.stranded]:
            relay.abort()


class NetFaults:
    """The ``net`` fixture (``stack.net``): the stack's network, one ``FaultProxy`` per program between it and the
    broker, and the fault calls on them. Names are the stack's program names; a typo is one sentence listing them.
    ``cut_connections`` is True once a blackhole, partition or reset may have lost an acknowledgement."""

    def __init__(self, upstream: tuple[str, int], record: Callable[[Fault], None]) -> None:
        self.upstream = upstream
        self._record = record
        # A blackhole, partition or reset happened: a connection left dead without being closed, or cut with
        # data in flight, so an ack may have been lost (the verdict's acks_in_doubt).
        self.cut_connections = False
        self.proxies: dict[str, FaultProxy] = {}
        self.rules: list[list[str]] = []  # iptables rule specs this object added and has not removed yet
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="harness-fault-proxy", daemon=True)
        self._thread.start()

    def _call(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def add(self, program: str) -> FaultProxy:
        """A relay for ``program`` on a free loopback port (another one if that port was taken meanwhile); returns
        it. The stack does this for each of its programs."""
        for _ in range(5):
            proxy = FaultProxy(program, self.upstream, self._loop, free_ports(1)[0])
            try:
                self._call(proxy._start())
            except OSError:
                continue
            self.proxies[program] = proxy
            return proxy
        raise HarnessError(f"no free loopback port for {program}'s network fault proxy after 5 tries")

    def port(self, program: str) -> int:
        """The loopback port of ``program``'s relay: where the program's broker URL points."""
        return self._proxy(program).port

    def _proxy(self, program: str) -> FaultProxy:
        if program not in self.proxies:
            raise HarnessError(
                f"the stack has no program {program!r} to fault the network of; its programs: {sorted(self.proxies)}"
            )
        return self.proxies[program]

    def connections(self, program: str) -> int:
        """How many connections ``program`` has open through its relay now."""
        return len(self._proxy(program).relays)

    def opened(self, program: str) -> int:
        """How many connections ``program`` has opened through its relay so far (a reconnect adds one)."""
        return self._proxy(program).connections_total

    def sockets(self, program: str, pid: int) -> list[tuple[int, str]]:
        """The TCP sockets process ``pid`` has to ``program``'s relay, as (local port, kernel state): what the
        program itself believes about its connections (a half-open one is still ESTABLISHED here)."""
        import psutil

        port = self._proxy(program).port
        try:
            found = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            return []
        return sorted((c.laddr.port, c.status) for c in found if c.raddr and c.raddr.port == port)

    # -- faults ------------------------------------------------------------------------------
    @contextmanager
    def blackhole(self, program: str) -> Iterator[None]:
        """A context manager: every packet to and from ``program``'s connections to the broker is dropped inside
        the block (iptables; needs root or CAP_NET_ADMIN), and flows again after it."""
        with self._dropped([program], "blackhole"):
            yield

    @contextmanager
    def partition(self, *programs: str) -> Iterator[None]:
        """A context manager: ``programs`` are cut off the broker (packets dropped, no RST) inside the block."""
        if not programs:
            raise HarnessError("net.partition() needs the programs to cut off, e.g. net.partition('worker', 'web')")
        with self._dropped(list(programs), "partition"):
            yield

    def reset(self, program: str) -> int:
        """Cut every connection ``program`` has to the broker with a TCP RST; returns how many were cut."""
        proxy = self._proxy(program)
        self.cut_connections = True
        self._record(NetworkFault(program=program, kind="reset"))
        cut = self._call(proxy._reset())
        return cut

    def strand(self, program: str) -> int:
        """Leave every connection ``program`` has to the broker dead in both directions, both ends open, while new
        connections work (a NAT that lost the flow, a failover); returns how many. Nothing heals them: the program
        notices by a timeout of its own, or never."""
        proxy = self._proxy(program)
        self.cut_connections = True
        self._record(NetworkFault(program=program, kind="stranded"))
        return self._call(proxy._strand())

    @contextmanager
    def latency(self, program: str, ms: float) -> Iterator[None]:
        """A context manager: ``ms`` added to each direction of ``program``'s traffic with the broker inside the
        block."""
        if ms < 0:
            raise HarnessError(f"net.latency(ms={ms}) must be 0 or more")
        proxy = self._proxy(program)
        self._record(NetworkFault(program=program, kind="latency", detail=f"{ms:g} ms"))
        proxy.latency_s = ms / 1000
        try:
            yield
        finally:
            proxy.latency_s = 0.0
            self._record(NetworkHealed(program=program, kind="latency"))

    @contextmanager
    def _dropped(self, programs: list[str], kind: str) -> Iterator[None]:
        ports = [self._proxy(name).port for name in programs]
        check_iptables()
        specs = [spec for port in ports for spec in drop_rules(port)]
        label = ", ".join(programs)
        added: list[list[str]] = []
        try:
            for spec in specs:
                iptables("-I", *spec)
                with self._lock:
                    self.rules.append(spec)
                added.append(spec)
            self.cut_connections = True
            self._record(NetworkFault(program=label, kind=kind))
            yield
        finally:
            for spec in added:
                self._delete(spec)
            self._record(NetworkHealed(program=label, kind=kind))

    def _delete(self, spec: list[str]) -> None:
        with self._lock:
            if spec not in self.rules:
                return
            self.rules.remove(spec)
        iptables("-D", *spec, check=False)

    def close(self) -> None:
        """Remove every rule still in place, cut every relayed connection, stop the relays; returns None.
        Idempotent; the stack does this."""
        for spec in list(self.rules):
            self._delete(spec)
        if self._loop.is_closed():
            return
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                self._call(proxy._close(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


# -- iptables ----------------------------------------------------------------------------------------


def drop_rules(port: int, pid: int | None = None) -> list[list[str]]:
    """The rules that blackhole the relay on ``port``: packets to it, and packets from it (its answers)."""
    tail = ["-m", "comment", "--comment", rule_comment(pid), "-j", "DROP"]
    return [
        [CHAIN, "-i", "lo", "-p", "tcp", "--dport", str(port), *tail],
        [CHAIN, "-i", "lo", "-p", "tcp", "--sport", str(port), *tail],
    ]


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise HarnessError(f"iptables {' '.join(args)} failed: {done.stderr.strip() or done.returncode}")
    return done


_checked: list[bool] = []


def check_iptables() -> None:
    """One sentence, at once, if blackholes cannot be made here (no iptables, or not permitted)."""
    if _checked:
        return
    if shutil.which("iptables") is None:
        raise HarnessError(
            "a blackhole or partition needs iptables, which is not installed (apt-get install iptables); "
            "net.reset() and net.latency() work without it"
        )
    done = subprocess.run(["iptables", "-w", "5", "-S", CHAIN], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise HarnessError(
            f"a blackhole or partition needs iptables rules, which this user may not add "
            f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}): run as root "
            "or with CAP_NET_ADMIN; net.reset() and net.latency() work without it"
        )
    _checked.append(True)


def harness_rules() -> list[tuple[int, str]]:
    """Every rule of the harness in place now, as (pid that added it, ``iptables -S`` line)."""
    if shutil.which("iptables") is None:
        return []
    done = subprocess.run(["iptables", "-w", "5", "-S", CHAIN], capture_output=True, text=True, timeout=30)
    found = []
    for line in done.stdout.splitlines():
        if RULE_TAG in line:
            pid = line.split(f"{RULE_TAG} pid=", 1)[1].split('"', 1)[0].split()[0]
            found.append((int(pid) if pid.isdigit() else 0, line))
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_rules(pids: set[int] | None = None) -> list[str]:
    """Remove the harness's rules whose adding process is dead (or whose pid is in ``pids``): what a killed
    run left. Returns the rules removed."""
    import shlex

    removed = []
    for pid, line in harness_rules():
        if (pids is not None and pid in pids) or not _pid_alive(pid):
            spec = shlex.split(line)
            if spec and spec[0] == "-A":
                iptables("-D", *spec[1:], check=False)
                removed.append(line)
    return removed
