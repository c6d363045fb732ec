"""GregorMQ's Python SDK: asyncio first (`async with connect(servers=[...]) as client`), with a
synchronous wrapper in `gregormq.sync`. docs/protocol.md is the protocol it speaks."""

from .batch import Header, murmur2, partition_for_key
from .client import Client, PartitionInfo, TopicDescription, TopicSummary, connect
from .consumer import FromOffset, FromTimestamp, Message, Start, Subscription
from .group import GroupConsumer
from .errors import BrokerError, ClientClosed, ConnectionLost, GregorError
from .producer import Producer, Result

__all__ = [
    "BrokerError",
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "FromOffset",
    "FromTimestamp",
    "GregorError",
    "GroupConsumer",
    "Header",
    "Message",
    "PartitionInfo",
    "Producer",
    "Result",
    "Start",
    "Subscription",
    "TopicDescription",
    "TopicSummary",
    "connect",
    "murmur2",
    "partition_for_key",
]
