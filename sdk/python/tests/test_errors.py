"""Errors carry the broker's code, its protocol name and whether a retry may succeed."""

from __future__ import annotations

from gregormq import BrokerError


def test_a_broker_error_names_its_code() -> None:
    e = BrokerError(10, "topic t does not exist")
    assert (e.code, e.code_name, e.retriable, e.fatal) == (10, "UNKNOWN_TOPIC", False, False)
    assert str(e) == "UNKNOWN_TOPIC: topic t does not exist"


def test_retriable_and_fatal_codes() -> None:
    assert BrokerError(23).retriable and BrokerError(30).retriable
    assert BrokerError(8).fatal and not BrokerError(8).retriable


def test_an_unknown_code_is_not_retriable() -> None:
    e = BrokerError(999)
    assert e.code_name == "CODE_999" and not e.retriable
