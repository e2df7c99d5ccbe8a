"""No network by default: the sandbox cannot reach a service on the host's own bridge address.

Dialling ``127.0.0.1`` from inside a sandbox proves nothing (that is the sandbox's own loopback),
so the test listens on the host's Docker bridge address (``docker0``), which any container on a
bridge network can reach, and shows that the default sandbox cannot. Each check is proven able to
fail: the same probe reaches the listener from a ``network="bridge"`` sandbox (Docker) or from the
host itself (bubblewrap). Nothing else is ever dialled.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from envkit.sandbox import DockerSandbox, SandboxConfig
from envkit.sandbox.local_sandbox import LocalSandbox

_SIOCGIFADDR = 0x8915

# Dials the listener once; prints CONNECTED or the error's name. Then lists interfaces and routes.
_PROBE = """
import socket
s = socket.socket(); s.settimeout(3)
try:
    s.connect(({host!r}, {port})); print("CONNECTED")
except OSError as e:
    print("unreachable", type(e).__name__)
print("===")
print(open("/proc/net/dev").read())
print("===")
print(open("/proc/net/route").read())
print("===")
try:
    print(open("/proc/net/ipv6_route").read())
except OSError:
    pass
"""


class _Listener:
    """A TCP server on ``host`` (the host's own address) that counts the connections it accepts."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = socket.socket()
        self.sock.bind((host, 0))  # binding proves the address is the host's own
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def settled(self, expected: int) -> int:
        """The connection count once it reaches ``expected`` (or after ~3 s without)."""
        for _ in range(30):
            if self.connections >= expected:
                break
            time.sleep(0.1)
        return self.connections

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class _Seen:
    """What the probe saw from inside a sandbox."""

    def __init__(self, stdout: str) -> None:
        dial, dev, route, route6 = [*stdout.split("===\n"), "", "", ""][:4]
        self.dial = dial.strip()
        self.interfaces = [ln.split(":")[0].strip() for ln in dev.splitlines()[2:] if ":" in ln]
        self.routes = [ln for ln in route.strip().splitlines()[1:] if ln.strip()]
        self.routes6 = [ln for ln in route6.splitlines() if ln.strip() and not ln.endswith(" lo")]

    @property
    def isolated(self) -> bool:
        return (
            self.dial.startswith("unreachable")
            and self.interfaces == ["lo"]
            and not self.routes
            and not self.routes6
        )


def _interface_address(name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


def _bridge_address(client: Any) -> str:
    """The host's address on Docker's default bridge (docker0's IPv4 address)."""
    attrs = client.networks.get("bridge").attrs
    return _interface_address(
        attrs.get("Options", {}).get("com.docker.network.bridge.name", "docker0")
    )


def _host_address() -> str:
    """A non-loopback address of this host: docker0's if there is one, else the default route's
    interface (bubblewrap needs no Docker, but its test needs an address that is not loopback)."""
    try:
        return _interface_address("docker0")
    except OSError:
        pass
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            iface, dest = line.split()[:2]
            if dest == "00000000":
                return _interface_address(iface)
    pytest.fail("this host has no docker0 and no default route: no non-loopback address to use")


@pytest.fixture
def listener(docker_client: Any) -> Iterator[_Listener]:
    server = _Listener(_bridge_address(docker_client))
    yield server
    server.close()


@pytest.fixture
def host_listener() -> Iterator[_Listener]:
    server = _Listener(_host_address())
    yield server
    server.close()


def _probe(listener: _Listener) -> list[str]:
    return ["python3", "-c", _PROBE.format(host=listener.host, port=listener.port)]


def _host_can_reach(listener: _Listener) -> None:
    before = listener.connections
    with socket.create_connection((listener.host, listener.port), timeout=2):
        pass
    assert listener.settled(before + 1) == before + 1  # the listener works


@pytest.mark.docker
def test_docker_default_cannot_reach_the_host_bridge(
    listener: _Listener, shared_sandbox: DockerSandbox
) -> None:
    _host_can_reach(listener)
    before = listener.connections
    r = shared_sandbox.exec(_probe(listener), timeout=20)
    seen = _Seen(r.stdout)
    assert seen.isolated, r.stdout
    time.sleep(0.5)
    assert listener.connections == before


@pytest.mark.docker
def test_docker_bridge_network_reaches_it_control(listener: _Listener, docker_client: Any) -> None:
    """The control: with ``network="bridge"`` the very same checks fail."""
    with DockerSandbox(SandboxConfig(network="bridge")) as sb:
        before = listener.connections
        r = sb.exec(_probe(listener), timeout=20)
        seen = _Seen(r.stdout)
        assert seen.dial == "CONNECTED", r.stdout
        assert listener.settled(before + 1) == before + 1
        assert seen.interfaces != ["lo"] and seen.routes and not seen.isolated


def test_local_sandbox_cannot_reach_the_host(host_listener: _Listener) -> None:
    listener = host_listener
    with LocalSandbox() as sb:
        before = listener.connections
        r = sb.exec(_probe(listener), timeout=20)
        seen = _Seen(r.stdout)
        assert seen.isolated, r.stdout
        time.sleep(0.5)
        assert listener.connections == before
    # the control: the same probe, run on the host, connects and sees more than loopback
    host = subprocess.run(
        [sys.executable, *_probe(listener)[1:]], capture_output=True, text=True, timeout=20
    )
    seen = _Seen(host.stdout)
    assert seen.dial == "CONNECTED" and not seen.isolated, host.stdout
    assert listener.settled(before + 1) == before + 1
