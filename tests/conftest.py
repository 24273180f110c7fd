"""Session fixtures shared by every test: S3 servers on loopback, the Dask cluster, store cases.

Nothing here is mocked: ``s3_endpoint`` is a real moto server speaking HTTP on 127.0.0.1,
``s3_auth_server`` a second one in its own process that enforces credentials, and ``client`` a
``LocalCluster`` with two worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from zarr_dask_utils import open_store
from zarr_dask_utils.testing.multihost import AWS_TEST_ENV

# Credentials every test sees: the machine's own AWS settings must never leak into a test run
# (the same dummy settings the multi-host test cluster gives its processes).
_AWS_ENV = AWS_TEST_ENV
_AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session", autouse=True)
def _aws_environment() -> Iterator[None]:
    """Pin the AWS environment to dummy values for the whole session (restored afterwards).

    Autouse and session-scoped, so it is in place before the cluster spawns its workers, which
    inherit the environment.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in _AWS_UNSET:
            mp.delenv(name, raising=False)
        for name, value in _AWS_ENV.items():
            mp.setenv(name, value)
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _s3_client(endpoint: str, key: str = "testing", secret: str = "testing") -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


# --- the S3 server ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server in this process on 127.0.0.1 (a free port); yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # else one log line per request
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _s3_admin(s3_endpoint: str) -> Any:
    """One boto3 client on ``s3_endpoint`` for the session (each new client costs ~0.3 s)."""
    return _s3_client(s3_endpoint)


@pytest.fixture
def s3_bucket(_s3_admin: Any) -> str:
    """A fresh, empty bucket on ``s3_endpoint``; returns its name."""
    name = f"t-{uuid4().hex[:12]}"
    _s3_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_storage_options(s3_endpoint: str) -> dict[str, Any]:
    """``storage_options`` for s3fs talking to ``s3_endpoint``."""
    return {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}


# --- an S3 server that checks credentials ------------------------------------------------------


@dataclass(frozen=True)
class AuthServer:
    """A moto server enforcing IAM authentication, with one user allowed ``s3:*``.

    ``url`` holds a sample hierarchy (format 3) written with the valid credentials.
    """

    endpoint: str
    bucket: str
    key: str
    secret: str

    @property
    def url(self) -> str:
        """The URL of the sample store in ``bucket``."""
        return f"s3://{self.bucket}/store.zarr"

    def storage_options(
        self, *, key: str | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """``storage_options`` with the valid credentials, or the ones given instead."""
        return {
            "key": self.key if key is None else key,
            "secret": self.secret if secret is None else secret,
            "endpoint_url": self.endpoint,
        }


# Requests moto serves without checking credentials (create user, policy, attach, access key):
# every later request must be signed by a known key whose policies allow the action.
_AUTH_SETUP_CALLS = 4


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"moto_server did not listen on port {port}: {log.read_text()}")


@pytest.fixture(scope="session")
def s3_auth_server(
    tmp_path_factory: pytest.TempPathFactory, _aws_environment: None
) -> Iterator[AuthServer]:
    """A second moto server, in its own process, that refuses wrong credentials.

    moto counts unauthenticated requests per process (``INITIAL_NO_AUTH_ACTION_COUNT``), so it
    cannot share a process with ``s3_endpoint``.  The first requests create an IAM user, a
    policy allowing ``s3:*`` and an access key; the bucket and its sample store are then
    written with that key, proving the valid credentials work.
    """
    from zarr_dask_utils.testing.builders import build_sample_hierarchy

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto-auth") / "server.log"
    # moto is not our code: keep coverage (patch = ["subprocess"]) out of that process
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "COV_CORE_"))}
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_AUTH_SETUP_CALLS)
    server_cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(server_cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, proc, log)
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="zdu-test")
        policy = iam.create_policy(
            PolicyName="zdu-s3-all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        iam.attach_user_policy(UserName="zdu-test", PolicyArn=policy["Policy"]["Arn"])
        access = iam.create_access_key(UserName="zdu-test")["AccessKey"]
        server = AuthServer(
            endpoint=endpoint,
            bucket=f"auth-{uuid4().hex[:8]}",
            key=access["AccessKeyId"],
            secret=access["SecretAccessKey"],
        )
        _s3_client(endpoint, server.key, server.secret).create_bucket(Bucket=server.bucket)
        build_sample_hierarchy(server.url, storage_options=server.storage_options())
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - moto ignores SIGTERM
            proc.kill()
            proc.wait()


# --- the latency rig: S3 that behaves like remote object storage --------------------------------


@pytest.fixture(scope="session")
def s3_rig(_aws_environment: None) -> Iterator[Any]:
    """A :class:`~zarr_dask_utils.testing.s3rig.S3Rig`: 2 moto processes, 20 ms ± 2 ms per request.

    No bandwidth limit.  Use ``s3_rig.make_bucket()`` for a fresh bucket, ``s3_rig.storage_options``
    for s3fs/zarr, ``s3_rig.reset_stats()`` / ``s3_rig.stats()["GET"]`` to count requests, and
    ``with s3_rig.unthrottled():`` to fill a bucket fast.  A test that calls
    ``s3_rig.configure(...)`` must restore the settings it changed.
    """
    from zarr_dask_utils.testing.s3rig import S3Rig

    with S3Rig(latency=0.020, jitter=0.002, servers=2) as rig:
        yield rig


# --- the Dask cluster ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def client(_aws_environment: None) -> Iterator[Any]:
    """A ``LocalCluster`` with 2 worker processes (1 thread each) and a Client on it."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as cl,
    ):
        yield cl


@pytest.fixture(scope="session")
def multihost(tmp_path_factory: pytest.TempPathFactory, _aws_environment: None) -> Iterator[Any]:
    """A :class:`~zarr_dask_utils.testing.multihost.MultiHostCluster` shared by the session.

    Scheduler, two worker hosts (one worker process, one thread each) and a moto S3 host, each
    in its own network namespace.  Skips where namespaces cannot be made.  Do not cut or kill
    its hosts: destructive tests build their own ``MultiHostCluster``.
    """
    from zarr_dask_utils.testing.multihost import MultiHostCluster, namespaces_skip_reason

    reason = namespaces_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with MultiHostCluster(tmp_path_factory.mktemp("multihost")) as cluster:
        yield cluster


# --- store cases: format {2, 3} x location {local, s3} --------------------------------------------


@dataclass(frozen=True)
class StoreCase:
    """A fresh, empty place for one store, and how to reach it.

    Parameters
    ----------
    url
        Local path or ``s3://bucket/store.zarr``.
    storage_options
        ``None`` for local paths (they take none), the moto credentials for S3.
    zarr_format
        The format the test should write (2 or 3).
    where
        ``"local"`` or ``"s3"``.
    """

    url: str
    storage_options: dict[str, Any] | None
    zarr_format: int
    where: str

    def store(self, read_only: bool = False) -> Any:
        """The zarr Store at ``url`` (writable unless asked)."""
        return open_store(self.url, storage_options=self.storage_options, read_only=read_only)

    def child(self, name: str) -> str:
        """Another fresh URL beside ``url`` (same directory or bucket)."""
        return f"{self.url.rpartition('/')[0]}/{name}"


_CASES = [
    pytest.param((2, "local"), id="v2-local"),
    pytest.param((3, "local"), id="v3-local"),
    pytest.param((2, "s3"), id="v2-s3", marks=pytest.mark.s3),
    pytest.param((3, "s3"), id="v3-s3", marks=pytest.mark.s3),
]


@pytest.fixture(params=_CASES)
def store_case(request: pytest.FixtureRequest, tmp_path: Path) -> StoreCase:
    """A :class:`StoreCase` for each of ``v2-local``, ``v3-local``, ``v2-s3``, ``v3-s3``.

    The S3 server is only started for the S3 cases.  A test can pick cases with
    ``@pytest.mark.parametrize("store_case", ["v3-local", "v3-s3"], indirect=True)``.
    """
    param = request.param
    if isinstance(param, str):  # "v3-s3"
        fmt, _, where = param.partition("-")
        param = (int(fmt.lstrip("v")), where)
    zarr_format, where = param
    if where == "local":
        return StoreCase(str(tmp_path / "store.zarr"), None, zarr_format, where)
    bucket = request.getfixturevalue("s3_bucket")
    options = dict(request.getfixturevalue("s3_storage_options"))
    return StoreCase(f"s3://{bucket}/store.zarr", options, zarr_format, where)


@pytest.fixture
def sample(store_case: StoreCase) -> StoreCase:
    """``store_case`` holding :func:`~zarr_dask_utils.testing.build_sample_hierarchy`."""
    from zarr_dask_utils.testing.builders import build_sample_hierarchy

    build_sample_hierarchy(
        store_case.url,
        zarr_format=store_case.zarr_format,
        storage_options=store_case.storage_options,
    )
    return store_case
