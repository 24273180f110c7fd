"""Run docker-compose.yml without Docker: every service's command as a local process.

    python deploy/compose_local.py                       # deploy/docker-compose.yml, service zdu
    python deploy/compose_local.py FILE --service zdu --keep-logs

What it does, the way ``docker compose up --exit-code-from zdu`` would, but on this machine
with the Python environment it runs in (``dask``, ``zdu``, ``moto_server`` found beside this
Python first): interpolates ``${VAR:-default}`` (every ``*_PORT`` variable not set in the
environment gets a free port), maps the service names (and ``0.0.0.0``) to ``127.0.0.1`` in
commands, health checks and environments, starts the services in ``depends_on`` order, waits
for ``service_healthy`` by running each health check locally, runs the one-shot service to its
end, then stops every process it started (SIGTERM to its process group, SIGKILL after 15 s).
Its exit code is the one-shot service's. Images, volumes and networks are ignored: this checks
the commands, the wiring between services and the one-shot's result, not the containers.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = Path(__file__).with_name("docker-compose.yml")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``$$`` substitution."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        return env.get(name) or (default if default is not None else "")

    return _VAR.sub(one, text)


def load(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The compose file with variables substituted; ``*_PORT`` variables get free ports."""
    text = path.read_text()
    for name in sorted(set(re.findall(r"\$\{([A-Z0-9_]*PORT)\b", text))):
        env.setdefault(name, str(free_port()))
    return dict(yaml.safe_load(interpolate(text, env)))


@dataclass
class Service:
    """One compose service as local processes."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health: list[str] | None
    depends_on: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


#: options whose value is a host or host:port (dask, moto_server)
HOST_OPTIONS = frozenset({"--host", "-H", "--dashboard-address", "--listen-address"})


def _localize(text: str, names: list[str], *, host_value: bool = False) -> str:
    """Host names -> 127.0.0.1: a URL's host, or a host option's value (``--host worker-1``)."""
    pattern = "|".join(re.escape(n) for n in [*names, "0.0.0.0"])
    if host_value:
        return re.sub(rf"^({pattern})(?=:|$)", "127.0.0.1", text)
    return re.sub(rf"(?<=//)({pattern})(?=[:/]|$)", "127.0.0.1", text)


def _localize_argv(words: list[str], names: list[str]) -> list[str]:
    return [
        _localize(w, names, host_value=i > 0 and words[i - 1] in HOST_OPTIONS)
        for i, w in enumerate(words)
    ]


def services(compose: dict[str, Any], env: dict[str, str]) -> dict[str, Service]:
    """The services of ``compose`` with commands, environments and health checks localized."""
    names = list(compose["services"])
    bindir = str(Path(sys.executable).parent)
    result = {}
    for name, spec in compose["services"].items():
        raw_env = spec.get("environment") or {}
        if isinstance(raw_env, list):
            raw_env = dict(item.split("=", 1) for item in raw_env)
        service_env = {**env, **{k: _localize(str(v), names) for k, v in raw_env.items()}}
        service_env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        argv = _localize_argv(_words(spec.get("entrypoint")) + _words(spec.get("command")), names)
        test = (spec.get("healthcheck") or {}).get("test")
        health = None
        if test:
            words = _localize_argv(_words(test), names)
            health = ["sh", "-c", words[1]] if words[0] == "CMD-SHELL" else words[1:]
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        conditions = {d: (c or {}).get("condition", "service_started") for d, c in depends.items()}
        result[name] = Service(name, argv, service_env, health, conditions)
    return result


def _order(all_services: dict[str, Service], target: str) -> list[str]:
    """``target`` and what it depends on, dependencies first."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name not in order:
            for dep in all_services[name].depends_on:
                visit(dep, (*path, name))
            order.append(name)

    visit(target, ())
    return order


def _wait_healthy(service: Service, deadline: float) -> None:
    assert service.health is not None
    assert service.proc is not None
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"service {service.name} exited ({service.proc.returncode})")
        check = subprocess.run(
            service.health, env=service.env, capture_output=True, timeout=30, check=False
        )
        if check.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"service {service.name} did not become healthy")


def _stop(service: Service) -> None:
    proc = service.proc
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(
    path: Path = DEFAULT_FILE,
    *,
    target: str = "zdu",
    workdir: Path,
    timeout: float = 180.0,
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Service]]:
    """Start ``target``'s dependencies, run ``target`` to its end, stop everything.

    Returns ``target``'s exit code and the services (their logs are ``workdir/<name>.log``).
    """
    env = dict(os.environ if env is None else env)
    found = services(load(path, env), env)
    deadline = time.monotonic() + timeout
    started: list[Service] = []
    try:
        for name in _order(found, target):
            service = found[name]
            for dep, condition in service.depends_on.items():
                if condition == "service_healthy":
                    _wait_healthy(found[dep], deadline)
                elif condition == "service_completed_successfully":
                    dep_proc = found[dep].proc
                    assert dep_proc is not None
                    if dep_proc.wait(max(1.0, deadline - time.monotonic())) != 0:
                        raise RuntimeError(f"service {dep} failed")
            service.log = workdir / f"{name}.log"
            with service.log.open("wb") as log:
                service.proc = subprocess.Popen(
                    service.argv, env=service.env, cwd=workdir, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            started.append(service)
        target_proc = found[target].proc
        assert target_proc is not None
        code = target_proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        for service in reversed(started):
            _stop(service)
    return code, found


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the one-shot service's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--service", default="zdu", help="the one-shot service (default zdu)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs folder")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="zdu-compose-"))
    code = 2
    try:
        code, found = run(args.file, target=args.service, workdir=workdir)
        target_log = found[args.service].log
        assert target_log is not None
        print(target_log.read_text(), end="", flush=True)
        print(f"== {args.service} exited with {code}", file=sys.stderr)
    finally:
        if code != 0:
            for log in sorted(workdir.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"== last lines of {log.name}:", *tail, sep="\n", file=sys.stderr)
        if args.keep_logs or code != 0:
            print(f"== logs kept in {workdir}", file=sys.stderr)
        else:
            for log in workdir.iterdir():
                log.unlink()
            workdir.rmdir()
    return code


if __name__ == "__main__":
    sys.exit(main())
