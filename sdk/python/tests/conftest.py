"""Live brokers and a connection-cutting proxy for the tests that need them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
# How long a broker may take to print its listen address.
BROKER_START_TIMEOUT_S = 60


class Broker:
    """A cli/broker.ts process on a free port with its own data directory."""

    def __init__(
        self, deno: str, extra_args: tuple[str, ...] = (), data_dir: Optional[str] = None
    ) -> None:
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="gregormq-py-")
        self.proc = subprocess.Popen(
            [
                deno,
                "run",
                "-A",
                str(REPO / "cli" / "broker.ts"),
                "--port",
                "0",
                "--data-dir",
                self.data_dir,
                "--no-metrics-enabled",
                "--fsync",
                "never",
                *extra_args,
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        line: list[bytes] = []
        got = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            line.append(self.proc.stdout.readline())
            got.set()
            # Keep the pipe drained so the broker never blocks on its log.
            for _ in self.proc.stdout:
                pass

        threading.Thread(target=read, daemon=True).start()
        if not got.wait(BROKER_START_TIMEOUT_S) or not line[0]:
            self.stop()
            raise RuntimeError("the broker did not print its listen address")
        first = json.loads(line[0])
        self.addr: str = first["listen"]
        # Its cluster address, for a broker started with a cluster port.
        self.cluster: str = first.get("cluster", "")
        # Its node id ("" outside a cluster).
        self.node_id: str = first.get("nodeId", "")

    def stop(self) -> None:
        """Kills the broker and waits for it; stopping twice is harmless."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def deno_path() -> Optional[str]:
    # GREGORMQ_DENO names the Deno binary when it is not on PATH (the Deno test runner passes its
    # own).
    return os.environ.get("GREGORMQ_DENO") or shutil.which("deno")


class Brokers:
    """Starts brokers for a test and stops them all at its end."""

    def __init__(self, deno: str) -> None:
        self.deno = deno
        self.started: list[Broker] = []

    def start(self, extra_args: tuple[str, ...] = (), data_dir: Optional[str] = None) -> Broker:
        b = Broker(self.deno, extra_args, data_dir)
        self.started.append(b)
        return b

    def start_cluster(self, n: int) -> list[Broker]:
        """n brokers that form one replicating cluster, as conformance/README.md says: the
        first founds it, the others join it through its cluster address."""
        flags = ("--cluster-port", "0", "--cluster-replicate", "--cluster-bootstrap-expect", str(n))
        first = self.start(flags)
        return [first, *(self.start((*flags, "--seeds", first.cluster)) for _ in range(n - 1))]

    def stop_all(self) -> None:
        for b in self.started:
            b.stop()


@pytest.fixture(scope="module")
def brokers() -> Iterator[Brokers]:
    deno = deno_path()
    if deno is None:
        pytest.skip("deno is not on PATH and GREGORMQ_DENO is unset: no live broker to test against")
    bs = Brokers(deno)
    try:
        yield bs
    finally:
        bs.stop_all()


@pytest.fixture(scope="module")
def shared_broker(brokers: Brokers) -> Broker:
    return brokers.start()
