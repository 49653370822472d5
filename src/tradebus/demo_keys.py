"""The credentials the simulators accept unless told otherwise.

They are published (each simulator prints its own at start, ``--help`` shows them, the demo
configs use them as their ``${VAR:-default}``s), so they are not secrets: a readable config
file that holds one gets no ``config_secrets_readable`` warning (``config.exposed_secrets``),
and a user is not taught to ignore that warning on a fresh clone. Any other value still warns.
Importing this module imports nothing else.
"""

from __future__ import annotations

from typing import Final

TTMT_KEY: Final = "ttmt_live_demo_4b7e2d9a"
TPALERTS_TOKEN: Final = "tp_demo_token"  # noqa: S105 - published, see above
# Not "demo": a secret is scrubbed wherever it occurs in a log line.
TRADERWS_USERNAME: Final = "demo-user"
TRADERWS_PASSWORD: Final = "demo-password"  # noqa: S105 - published, see above
MT4_KEY: Final = "mt4-sim-key"
MT4_PASSWORD: Final = "mt4-sim-pass"  # noqa: S105 - published, see above
# `tradebus demo` runs its MT4 bridge with these (its config never leaves the process).
MT4_DEMO_KEY: Final = "mt4-demo-key"
MT4_DEMO_PASSWORD: Final = "mt4-demo-pass"  # noqa: S105 - published, see above

PUBLISHED: Final = frozenset(
    {
        TTMT_KEY,
        TPALERTS_TOKEN,
        TRADERWS_USERNAME,
        TRADERWS_PASSWORD,
        MT4_KEY,
        MT4_PASSWORD,
        MT4_DEMO_KEY,
        MT4_DEMO_PASSWORD,
    }
)
