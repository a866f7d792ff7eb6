"""A stand-in for the gateway's ``Sessions`` in dispatcher tests: it keeps what would be sent to clients."""

from __future__ import annotations

from protocol import Message


class SentMessages:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, client: bytes, message: Message) -> None:
        self.sent.append(message)
