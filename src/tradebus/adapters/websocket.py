"""What the WebSocket adapters share about aiohttp's client side."""

from __future__ import annotations

import aiohttp


def oversized(msg: aiohttp.WSMessage) -> aiohttp.WebSocketError | None:
    """The error of a message over ``max_msg_size``, if ``msg`` reports one.

    aiohttp refuses such a message unread, closes the connection with 1009 ("Message Too Big",
    RFC 6455 section 7.4.1) and hands back an ERROR message: the message is bad input (its
    bytes are gone, so no excerpt), and the connection is lost like any other cut.
    """
    error = msg.data
    if (
        msg.type is aiohttp.WSMsgType.ERROR
        and isinstance(error, aiohttp.WebSocketError)
        and error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    ):
        return error
    return None
