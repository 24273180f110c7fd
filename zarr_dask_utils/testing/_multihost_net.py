"""Network plumbing of the multi-host test cluster: namespaces, a bridge, veth pairs.

Every name carries a per-instance random suffix and every interface name stays within the
kernel's 15 characters.  Addresses come from a private ``10.x.y.0/24`` that no route of the
machine already covers; the bridge (in the root namespace) gets ``.1`` so the root namespace
reaches every host, and nothing is routed beyond that /24.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

__all__ = ["Host", "Network", "namespaces_unavailable", "sweep_stale"]


@dataclass(frozen=True)
class Host:
    """One test host: a network namespace with one address on the test bridge.

    Attributes
    ----------
    name
        ``"scheduler"``, ``"worker1"``, ``"worker2"``, ``"s3"``, ...
    netns
        The namespace name (``ip netns exec <netns> ...``).
    address
        Its IPv4 address on the test bridge (reachable from the root namespace).
    link
        The root-side veth of this host (``cut``/``restore`` act on it).
    """

    name: str
    netns: str
    address: str
    link: str


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def namespaces_unavailable() -> str | None:
    """Say why network namespaces cannot be made here, or ``None`` when they can.

    Returns
    -------
    str or None
        ``None`` when this process is root and ``ip netns add`` works; otherwise the reason
        (usable as a pytest skip reason).
    """
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add` as uid 0); this process is not root"
    probe = f"zdu-probe-{uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ip netns add is not allowed here: {done.stderr.strip() or done.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def namespaces_skip_reason() -> str | None:
    """Why tests of several hosts cannot run here (``None``: they run); for ``pytest.skip``.

    Only a process that is not root skips.  As root (as CI runs) a missing ``ip`` command or a
    refused ``ip netns add`` is an error, not a skip: it would silently hide those tests.

    Raises
    ------
    RuntimeError
        This process is root but network namespaces cannot be made.
    """
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add` as uid 0); this process is not root"
    reason = namespaces_unavailable()
    if reason is not None:
        raise RuntimeError(
            f"running as root, but {reason}: install iproute2 and allow network namespaces "
            "(the multi-host tests need them)"
        )
    return None


_STATE = Path("/run/zdu-multihost")
"""One file per live :class:`Network` (owner pid, names), so a later one can sweep leftovers."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete the namespaces, links and bridges of networks whose owner process is gone.

    A test run killed with SIGKILL cannot tear down; the next :class:`Network` does.  Returns
    the namespaces deleted.
    """
    removed: list[str] = []
    for state in sorted(_STATE.glob("*.json")) if _STATE.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(state.read_text())
            if _alive(int(info["pid"])):
                continue
            for name in info["links"]:
                _ip("link", "del", name, check=False)
            for name in info["netns"]:
                _ip("netns", "del", name, check=False)
                removed.append(name)
            state.unlink()
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for entry in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = entry.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def _free_subnet() -> ipaddress.IPv4Network:
    """A random private /24 under 10.0.0.0/8 that no route of the machine overlaps."""
    used = _used_networks()
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(64, 255)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free private /24 for the test hosts under 10.0.0.0/8")


@dataclass
class Network:
    """A bridge in the root namespace and one namespace + veth pair per host."""

    suffix: str = field(default_factory=lambda: uuid4().hex[:6])
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge: str | None = None
    subnet: ipaddress.IPv4Network | None = None

    def create(self, names: list[str]) -> None:
        """Create the bridge and a host per name (``.2``, ``.3``, ... on the /24)."""
        sweep_stale()
        self.subnet = _free_subnet()
        addresses = list(self.subnet.hosts())
        bridge = f"zdub{self.suffix}"
        self._record(bridge, names)
        _ip("link", "add", bridge, "type", "bridge")
        self.bridge = bridge
        _ip("addr", "add", f"{addresses[0]}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, name in enumerate(names):
            netns, outer, inner = (
                f"zdu-{self.suffix}-{name}",
                f"zr{self.suffix}{i}",
                f"zn{self.suffix}{i}",
            )
            _ip("netns", "add", netns)
            self.hosts[name] = host = Host(name, netns, str(addresses[i + 1]), outer)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", netns)
            _ip("link", "set", outer, "master", bridge)
            _ip("link", "set", outer, "up")
            _ip("link", "set", "lo", "up", netns=netns)
            _ip("addr", "add", f"{host.address}/24", "dev", inner, netns=netns)
            _ip("link", "set", inner, "up", netns=netns)

    def _record(self, bridge: str, names: list[str]) -> None:
        links = [bridge, *(f"zr{self.suffix}{i}" for i in range(len(names)))]
        info = {
            "pid": os.getpid(),
            "links": links,
            "netns": [f"zdu-{self.suffix}-{n}" for n in names],
        }
        _STATE.mkdir(parents=True, exist_ok=True)
        (_STATE / f"{self.suffix}.json").write_text(json.dumps(info))

    def set_link(self, host: str, up: bool) -> None:
        """Bring the root-side veth of *host* up or down."""
        _ip("link", "set", self.hosts[host].link, "up" if up else "down")

    def destroy(self) -> None:
        """Delete every namespace, veth and the bridge (idempotent, never raises)."""
        for host in self.hosts.values():
            _ip("link", "del", host.link, check=False)
            _ip("netns", "del", host.netns, check=False)
        if self.bridge is not None:
            _ip("link", "del", self.bridge, check=False)
            self.bridge = None
        (_STATE / f"{self.suffix}.json").unlink(missing_ok=True)
