"""The ``tradebus`` command line; ``tradebus --help`` lists its commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import msgspec

from tradebus import __version__, config, log, probe
from tradebus.errors import ConfigError

if TYPE_CHECKING:
    from tradebus.simulators.base import Simulator, SimulatorModule

SIMULATORS = ("ttmt", "tpalerts", "traderws", "mt4bridge")
DEMO_NAMES = {
    "ttmt": "ttmt-demo",
    "tpalerts": "alerts-demo",
    "traderws": "trader-demo",
    "mt4bridge": "mt4-demo",
}


def _simulator_modules() -> dict[str, SimulatorModule]:
    found: dict[str, SimulatorModule] = {}
    for kind in SIMULATORS:
        try:
            module: ModuleType = importlib.import_module(f"tradebus.simulators.{kind}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tradebus.simulators.{kind}":
                raise
            continue
        found[kind] = cast("SimulatorModule", module)
    return found


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed, else on the stock asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _cmd_run(args: argparse.Namespace) -> int:
    from tradebus.daemon.app import serve

    cfg = config.load(args.config)
    log.configure(
        args.log_level or cfg.daemon.log_level, fmt=args.log_format or cfg.daemon.log_format
    )
    exposed = config.exposed_secrets(args.config)
    if exposed:
        log.get().warning(
            "config_secrets_readable",
            file=str(args.config),
            keys=exposed,
            hint="chmod 600 the file, or use ${VAR} or <key>_file for these",
        )
    return _run_loop(serve(cfg, config_path=args.config))


def _cmd_journal(args: argparse.Namespace) -> int:
    from tradebus.journal import report

    # [daemon] and the sinks' names are all it reads: no source's or sink's secret is needed.
    daemon, sinks = config.load_daemon(args.config)
    filters = (args.provider, args.type, args.source, args.symbol, args.to_seq)
    if args.from_seq is None and not any(f for f in filters):
        return report.status(daemon, sinks, sys.stdout)
    return report.replay(
        daemon,
        args.from_seq,
        args.to_seq,
        providers=args.provider,
        types=args.type,
        sources=args.source,
        symbols=args.symbol,
    )


def _cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem `run` would stop at, in one report: the file's, and the state dir's."""
    from pathlib import Path

    from tradebus.journal.store import StateDirError, check_state_dir

    problems: list[str] = []
    try:
        cfg = config.load(args.config)
    except ConfigError as exc:
        problems += exc.problems
    try:
        daemon, _ = config.load_daemon(args.config)
        check_state_dir(Path(daemon.state_dir), create=False)
    except StateDirError as exc:
        problems += exc.problems
    except ConfigError:
        pass  # the [daemon] table's own problems are listed above
    if problems:
        raise ConfigError(problems)
    print(f"{args.config}: ok ({len(cfg.sources)} sources, {len(cfg.sinks)} sinks)")
    return 0


async def _demo(duration: float | None, seed: int) -> int:
    import tempfile

    # The demo keeps no state: its journal lives as long as the run.
    with tempfile.TemporaryDirectory(prefix="tradebus-demo-") as state:
        return await _demo_in(state, duration, seed)


async def _demo_in(state: str, duration: float | None, seed: int) -> int:
    from tradebus.daemon.app import serve

    sims: list[Simulator] = []
    tables: list[dict[str, Any]] = []
    try:
        for kind, module in _simulator_modules().items():
            sim = module.for_demo(seed)
            await sim.start("127.0.0.1", 0)
            sims.append(sim)
            tables.append(sim.source_table(DEMO_NAMES[kind]))
        cfg = config.parse(
            {
                "daemon": {"log_level": "info", "drain_timeout": 5.0, "state_dir": state},
                "sources": tables,
                "sinks": [{"name": "console", "type": "stdout"}],
            },
            env={},
        )
        return await serve(cfg, duration=duration)
    finally:
        for sim in sims:
            await sim.stop()


def _cmd_demo(args: argparse.Namespace) -> int:
    log.configure("info", fmt="console")
    return _run_loop(_demo(args.duration, args.seed))


async def _simulate(sim: Simulator, host: str, port: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sim.start(host, port)
    log.get().info("simulator_listening", host=host, port=sim.port)
    # For a person at a terminal: what it accepts, and a command that talks to it.
    print("\n".join(sim.usage()), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    log.configure("info", fmt="console")
    module: SimulatorModule = args.sim_module
    return _run_loop(_simulate(module.from_cli(args), args.host, args.port))


def _cmd_simulate_replay(args: argparse.Namespace) -> int:
    from tradebus.recording.files import RecordingError
    from tradebus.simulators import replay

    log.configure("info", fmt="console")
    try:
        sim = replay.from_cli(args)
    except RecordingError as exc:
        print(f"tradebus simulate replay: {exc}", file=sys.stderr)
        return 2
    return _run_loop(_simulate(sim, args.host, args.port))


def _cmd_health(args: argparse.Namespace) -> int:
    code, line = probe.health(args.url, ready=args.ready, timeout=args.timeout)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _cmd_status(args: argparse.Namespace) -> int:
    import time

    try:
        before = probe.readyz(args.url, args.timeout) if args.interval > 0 else None
        started = time.monotonic()
        if before is not None:
            time.sleep(args.interval)  # two readings make the rates; one gives only totals
        state = probe.readyz(args.url, args.timeout)
    except probe.ProbeError as exc:
        print(f"tradebus status: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(probe.render(state, before, elapsed, color=sys.stdout.isatty()))
    return 0 if state["ready"] else 1


def _cmd_replay(args: argparse.Namespace) -> int:
    from tradebus.recording import command

    log.configure("warning", fmt="console")
    return command.run(args)


class _UsageError(Exception):
    """A command's argument that cannot be used: one line, exit 2."""


def _token(path: str | None, command: str) -> str | None:
    """The ops endpoint's token held in ``path`` (``--token-file``); None without one. The
    token itself goes into no message."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError as exc:
        raise _UsageError(
            f"tradebus {command}: --token-file: cannot read it: {exc.strerror}"
        ) from None


def _cmd_reload(args: argparse.Namespace) -> int:
    token = _token(args.token_file, "reload")
    url = args.url
    if url is None and args.config is not None:
        # The file only says where the endpoint is: the daemon re-reads the file it runs.
        address = config.ops_address(args.config)
        if address is None:
            print(f"tradebus reload: {args.config} has no [daemon] http to ask", file=sys.stderr)
            return 1
        host, port = config.http_address(address)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host  # noqa: S104
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        code, lines = probe.reload(
            url or probe.DEFAULT_URL, dry_run=args.dry_run, timeout=args.timeout, token=token
        )
    except probe.ProbeError as exc:
        print(f"tradebus reload: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines), file=sys.stdout if code == 0 else sys.stderr)
    return code


def _cmd_tail(args: argparse.Namespace) -> int:
    from tradebus import tail

    if not args.url.startswith(("http://", "https://")):
        print(
            f"tradebus tail: --url: expected an http(s) URL, got {args.url[:80]!r}", file=sys.stderr
        )
        return 2
    token = _token(args.token_file, "tail")
    url = tail.stream_url(
        args.url, types=args.type, sources=args.source, symbols=args.symbol, start=args.start
    )
    show = tail.formatter(raw=args.json, color=sys.stdout.isatty() and not args.json)

    def emit(data: str) -> None:
        print(show(data), flush=True)

    def note(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        tail.follow(url, emit, note, token=token)
    except tail.TailError as exc:
        print(f"tradebus tail: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # | head
        return 0
    return 0


def _cmd_schema(_args: argparse.Namespace) -> int:
    from tradebus.schemas.events import json_schema

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(json_schema())) + b"\n")
    return 0


def _ops_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=probe.DEFAULT_URL, help="the ops endpoint (%(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=probe.DEFAULT_TIMEOUT, help="seconds (%(default)s)"
    )


def build_parser(*, simulators: bool = True) -> argparse.ArgumentParser:
    """The command line; ``simulators=False`` leaves out the simulators' own options.

    Those need the simulator modules (and aiohttp's server) imported, which the daemon itself
    never uses: ``tradebus run`` would carry their memory for its whole life.
    """
    parser = argparse.ArgumentParser(
        prog="tradebus",
        description="One daemon that turns trading feeds (TTMT, TradingPartners alerts, a Trader"
        " WebSocket API, an MT4 bridge) into one stream of canonical events, delivered to"
        " stdout, JSONL files, webhooks and NATS JetStream.",
        epilog="Try it: tradebus demo. Then: tradebus check-config -c FILE, tradebus run -c"
        " FILE; tradebus COMMAND --help for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tradebus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon with a config file")
    run.add_argument("-c", "--config", required=True, help="TOML config file")
    run.add_argument(
        "--log-format",
        choices=["json", "console"],
        help="overrides [daemon] log_format (default: console on a terminal, else json)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="overrides [daemon] log_level",
    )
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate a config file (exit 2 if invalid)")
    check.add_argument("-c", "--config", required=True, help="TOML config file")
    check.set_defaults(func=_cmd_check_config)

    health = sub.add_parser(
        "health", help="ask a running daemon's ops endpoint (exit 0 healthy, 1 not)"
    )
    _ops_arguments(health)
    health.add_argument(
        "--ready", action="store_true", help="ask /readyz (every feed up) instead of /healthz"
    )
    health.set_defaults(func=_cmd_health)

    status = sub.add_parser(
        "status", help="a running daemon's sources and sinks (exit 0 ready, 1 not)"
    )
    _ops_arguments(status)
    status.add_argument(
        "--interval", type=float, default=1.0, help="seconds between the readings that give ev/s"
    )
    status.set_defaults(func=_cmd_status)

    _reload_command(sub)

    journal = sub.add_parser(
        "journal",
        help="the journal's state and each sink's cursor; with --from-seq or a filter, its"
        " events as JSONL",
    )
    journal.add_argument("-c", "--config", required=True, help="TOML config file")
    journal.add_argument(
        "--from-seq", type=int, default=None, help="replay from this seq (default: the first)"
    )
    journal.add_argument("--to-seq", type=int, default=None, help="... through this one")
    for flag, what in (
        ("--provider", "upstream kind"),
        ("--type", "type prefix (order., status)"),
        ("--source", "source name"),
        ("--symbol", "symbol"),
    ):
        journal.add_argument(flag, action="append", default=[], help=f"keep only this {what}")
    journal.set_defaults(func=_cmd_journal)

    demo = sub.add_parser("demo", help="run the daemon on the built-in simulators")
    demo.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    demo.add_argument("--seed", type=int, default=1, help="simulators' random seed")
    demo.set_defaults(func=_cmd_demo)

    _simulate_command(sub, simulators=simulators)

    replay = sub.add_parser(
        "replay", help="feed recordings (record = true) through their adapters: events as JSONL"
    )
    _replay_arguments(replay)
    replay.set_defaults(func=_cmd_replay)

    _tail_command(sub)

    schema = sub.add_parser("schema", help="print the JSON Schema of the canonical Event")
    schema.set_defaults(func=_cmd_schema)
    return parser


def _reload_command(sub: Any) -> None:
    reload = sub.add_parser(
        "reload",
        help="make a running daemon re-read its config file and apply the difference"
        " (exit 0 applied, 1 refused or partly applied)",
    )
    reload.add_argument(
        "-c", "--config", help="TOML config file: only to find the ops endpoint ([daemon] http)"
    )
    reload.add_argument("--url", default=None, help=f"the ops endpoint ({probe.DEFAULT_URL})")
    reload.add_argument("--timeout", type=float, default=60.0, help="seconds (%(default)s)")
    reload.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    reload.add_argument("--token-file", help="a file holding [daemon] http_token")
    reload.set_defaults(func=_cmd_reload)


def _simulate_command(sub: Any, *, simulators: bool) -> None:
    simulate = sub.add_parser("simulate", help="run one fake upstream")
    kinds = simulate.add_subparsers(dest="kind", required=True)
    for kind, module in (_simulator_modules() if simulators else {}).items():
        # "resolve": a simulator may define --host/--port itself, with its own defaults.
        p = kinds.add_parser(kind, help=f"the {kind} simulator", conflict_handler="resolve")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=0, help="0 picks a free port")
        module.add_cli_arguments(p)
        p.set_defaults(func=_cmd_simulate, sim_module=module)
    if simulators:
        from tradebus.simulators import replay as served

        p = kinds.add_parser("replay", help="serve a recording as the upstream it came from")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=0, help="0 picks a free port")
        served.add_cli_arguments(p)
        p.set_defaults(func=_cmd_simulate_replay)


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    from tradebus.recording.command import add_arguments

    add_arguments(parser)


def _tail_command(sub: Any) -> None:
    tail = sub.add_parser(
        "tail", help="follow the events of a running daemon (its ops endpoint), one line each"
    )
    tail.add_argument("--url", default=probe.DEFAULT_URL, help="the ops endpoint (%(default)s)")
    tail.add_argument(
        "--type", action="append", default=[], help="a type prefix (order.); repeatable"
    )
    tail.add_argument("--source", action="append", default=[], help="a source; repeatable")
    tail.add_argument("--symbol", action="append", default=[], help="a symbol; repeatable")
    tail.add_argument(
        "--from",
        dest="start",
        default="now",
        help="now (default), earliest, or a seq: where to begin",
    )
    tail.add_argument("--json", action="store_true", help="the raw event lines")
    tail.add_argument("--token-file", help="a file holding [daemon] http_token")
    tail.set_defaults(func=_cmd_tail)


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(simulators=_command(words) in (None, "simulate")).parse_args(words)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
