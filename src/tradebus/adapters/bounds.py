"""The bounds every upstream string meets where it enters the model: in the decoder.

An id, a symbol or a time is embedded in event ids and output lines, so one upstream that sends
a 4 MB ``ts`` would grow every line by 4 MB. ``msgspec.Meta(max_length=...)`` on the wire
structs refuses such a message while decoding (a ``ValidationError``: the message is bad input,
counted and skipped), at no cost to the hot path. docs/running.md's "Limits" lists these numbers.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias

import msgspec

MAX_ID: Final = 256
MAX_NAME: Final = 64
MAX_TIME: Final = 64
MAX_TEXT: Final = 4096

# A numeric id (a ticket, an alert id, an event counter): JSON integers have no bound, and
# outside a signed 64-bit range one is hostile, not an id.
IntId: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# Ids and the parts of ids: event, order, position, trade, task and session ids.
Id: TypeAlias = Annotated[str, msgspec.Meta(max_length=MAX_ID)]
# Symbols, accounts, and the short words of the protocol (a side, a status, a currency).
Name: TypeAlias = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
# An upstream's own time: it must also parse as one, else the event takes its receipt time.
Time: TypeAlias = Annotated[str, msgspec.Meta(max_length=MAX_TIME)]
# Free text: reasons, comments, error messages, channel names.
Text: TypeAlias = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
