"""SCRAM-SHA-256 login: the RFC 7677 exchange of the golden corpus, and a live broker started with
--auth scram."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile

import pytest
from conftest import REPO, Brokers
from test_golden import CASES, golden_bytes

import gregormq
from gregormq import BrokerError
from gregormq.protocol import decode_frame, decode_payload, schema_for
from gregormq.scram import ScramClient


def golden_message(name: str) -> bytes:
    case = next(c for c in CASES if c["name"] == name)
    f = decode_frame(golden_bytes(case))
    return bytes(decode_payload(schema_for(f.opcode, f.flags), f.payload)["message"])


def test_the_rfc_7677_exchange_of_the_golden_corpus() -> None:
    s = ScramClient("user", "pencil", "rOprNGfwEbeRWgbNEkqO")
    assert s.first() == golden_message("auth_start_request")
    assert s.final(golden_message("auth_start_response")) == golden_message("auth_finish_request")
    s.verify(golden_message("auth_finish_response"))


def test_a_forged_server_signature_is_refused() -> None:
    s = ScramClient("user", "pencil", "rOprNGfwEbeRWgbNEkqO")
    s.final(golden_message("auth_start_response"))
    with pytest.raises(BrokerError) as e:
        s.verify(b"v=" + b"A" * 44)
    assert e.value.code_name == "AUTHENTICATION_FAILED"


def test_a_nonce_the_client_did_not_start_is_refused() -> None:
    s = ScramClient("user", "pencil", "another-client-nonce")
    with pytest.raises(BrokerError):
        s.final(golden_message("auth_start_response"))


def test_login_against_a_broker_with_auth_on(brokers: Brokers) -> None:
    data = tempfile.mkdtemp(prefix="gregormq-py-auth-")
    add = subprocess.run(
        [brokers.deno, "run", "-A", str(REPO / "cli" / "gregorctl.ts"), "user", "add", "alice",
         "--data-dir", data],
        env={**os.environ, "GREGOR_NEW_PASSWORD": "wonderland"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    b = brokers.start(("--auth", "scram", "--super-users", "alice"), data)

    async def main() -> None:
        async with gregormq.connect(
            servers=[b.addr], username="alice", password="wonderland"
        ) as c:
            await c.create_topic("py-auth", 1)
            assert "py-auth" in [t.name for t in await c.list_topics()]
        bad = gregormq.connect(servers=[b.addr], username="alice", password="rabbit")
        with pytest.raises(BrokerError) as e:
            await bad.connection()
        assert e.value.code_name == "AUTHENTICATION_FAILED"
        anonymous = gregormq.connect(servers=[b.addr])
        await anonymous.connection()
        with pytest.raises(BrokerError) as e:
            await anonymous.list_topics()
        assert e.value.code_name == "HANDSHAKE_REQUIRED"
        await anonymous.close()

    asyncio.run(asyncio.wait_for(main(), 60))
