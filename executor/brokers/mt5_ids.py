"""How our orders are told apart from an EA's on the same MT5 account.

Two marks: the daemon's ``magic`` number and a comment token (``comment_prefix +
client_order_id``, at most 31 characters, MT5's comment limit). The comment carries our
client order id to the terminal and back, which is how an order whose outcome we do not
know is found without sending it again. Everything with another magic (the EA's trades)
is never modified: it is only readable, for shadow mode.
"""

from __future__ import annotations

from typing import Any

from domain import OrderIntent

MAX_COMMENT = 31


def comment_token(client_order_id: str, prefix: str = "") -> str:
    """The comment that carries our client order id to the terminal and back."""
    token = prefix + client_order_id
    if len(token) > MAX_COMMENT:
        raise ValueError(f"comment token {token!r} exceeds MT5's {MAX_COMMENT} characters")
    return token


class OrderMarks:
    """Our magic and comment prefix, and the intents of the orders we sent (a lookup
    returns the intent as we sent it, not as the terminal lists it)."""

    def __init__(self, magic: int, comment_prefix: str) -> None:
        self.magic = magic
        self.prefix = comment_prefix
        self.intents: dict[str, OrderIntent] = {}

    def token(self, client_order_id: str) -> str:
        return comment_token(client_order_id, self.prefix)

    def client_id(self, comment: str) -> str | None:
        """Our client order id at the start of a comment, or None: read up to the first
        character an id cannot hold, so text after the id does not change it."""
        prefix = self.prefix
        if not comment or not comment.startswith(prefix):
            return None
        rest = comment[len(prefix):]
        end = 0
        while end < len(rest) and (rest[end].isalnum() or rest[end] in "-_"):
            end += 1
        return rest[:end] or None

    def ours(self, item: dict[str, Any]) -> bool:
        return int(item.get("magic") or 0) == self.magic

    def client_id_of(self, item: dict[str, Any]) -> str | None:
        return self.client_id(str(item.get("comment", "")))
