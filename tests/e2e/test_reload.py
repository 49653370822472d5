"""Reloading a running daemon's config by difference: `tradebus reload`, SIGHUP, refusals."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import aiohttp

from tests.e2e.delivery_rig import Rig, rig, toml_table, wait_for
from tests.e2e.process import run_cli
from tradebus.journal.store import Journal
from tradebus.simulators.mt4bridge import Mt4BridgeSimulator
from tradebus.simulators.tpalerts import TpAlertsSimulator
from tradebus.simulators.traderws import TraderWsSimulator
from tradebus.simulators.ttmt import TtmtSimulator


def _config(r: Rig, extra_source: dict[str, object] | None, sinks: str, daemon: str = "") -> None:
    sources = "".join(
        "\n[[sources]]\n" + toml_table(sim.source_table(f"feed{i}")) + "reconnect_max = 0.2\n"
        for i, sim in enumerate(r.sims)
    )
    if extra_source is not None:
        sources += "\n[[sources]]\n" + toml_table(extra_source)
    r.config.write_text(
        f'[daemon]\nlog_format = "json"\nstate_dir = "{r.state}"\ndrain_timeout = 2.0\n'
        f'http = "127.0.0.1:{r.http}"\n{daemon}\n{sources}'
        f'\n[[sinks]]\nname = "archive"\ntype = "file"\npath = "{r.out}"\n{sinks}'
    )


async def _reload(r: Rig, *args: str) -> tuple[int, str]:
    code, out, err = await run_cli("reload", "-c", str(r.config), *args)
    return code, (out + err).decode()


async def _metrics(r: Rig) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{r.http}/metrics") as resp,
    ):
        return await resp.text()


async def _status(r: Rig) -> list[str]:
    """`tradebus status`'s lines (one reading: no rates), ready or not."""
    _, out, _ = await run_cli("status", "--url", f"http://127.0.0.1:{r.http}", "--interval", "0")
    return out.decode().splitlines()


def _row(lines: list[str], sink: str) -> list[str]:
    """The words of ``sink``'s row in `tradebus status`, its name first."""
    rows = [line.split() for line in lines if line.split()[:1] == [sink]]
    assert len(rows) == 1, lines
    return rows[0]


def _assert_once_in_order(r: Rig) -> None:
    ids = [line["id"] for line in r.lines()]
    assert len(ids) == len(set(ids)), "an event written twice"
    for source, seen in r.ttmt_ids().items():
        assert seen == sorted(seen), f"{source} out of order"
        if source in ("feed0", "feed1"):
            r.assert_nothing_lost(source, seen[-1])


async def test_random_reloads_keep_unchanged_sources_and_the_file_sink(tmp_path: Path) -> None:
    """Many reloads (sources and sinks added, changed, removed; no-ops): the untouched
    sources keep their one connection, /readyz stays 200, the untouched file sink has every
    event once and in order; SIGHUP reloads as `tradebus reload` does."""
    rng = random.Random(27)
    extra_sim = TtmtSimulator(seed=99, rate=100.0)
    await extra_sim.start()
    async with rig(tmp_path, feeds=2, rate=200.0) as r:
        _config(r, None, "")
        proc = await r.start()
        try:
            await r.until_ready(lambda b: b["ready"] and b["sources"]["feed1"]["connected"], 20)
            extra: dict[str, object] | None = None
            for n in range(10):
                choice = rng.choice(["source", "sink", "noop"])
                sinks = ""
                if choice == "source":
                    extra = rng.choice(
                        [
                            None,
                            {**extra_sim.source_table("extra"), "required": False},
                            {
                                **extra_sim.source_table("extra"),
                                "required": False,
                                "symbol_cache": 99,
                            },
                        ]
                    )
                if choice == "sink" or rng.random() < 0.5:
                    side = tmp_path / f"side{rng.randrange(2)}.jsonl"
                    sinks = f'\n[[sinks]]\nname = "side"\ntype = "file"\npath = "{side}"\n'
                _config(r, extra, sinks)
                code, text = await _reload(r)
                assert code == 0, text
                assert "reload applied" in text
                status, body = await r.readyz()
                assert status == 200, body
                assert body["reload"]["generation"] == n + 2
            # SIGHUP: the same re-read, and the files reopened.
            _config(r, extra, '\n[[sinks]]\nname = "hup"\ntype = "stdout"\n')
            proc.send_signal(signal.SIGHUP)
            # The sink shows as soon as delivery has it, the reload's count once all of it is
            # applied: wait for the count (the generation), not for the sink alone.
            await r.until_ready(
                lambda b: "hup" in b["sinks"] and b["reload"]["generation"] == 12, 10
            )
            metrics = await _metrics(r)
            assert 'tradebus_config_reloads_total{result="applied"} 11.0' in metrics
            assert "tradebus_config_generation 12.0" in metrics
            assert "tradebus_config_last_reload_success_timestamp_seconds" in metrics
            await asyncio.sleep(0.3)  # events flow after the last reload too
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        for sim in r.sims:
            assert len(sim.attempts) == 1, sim.attempts  # never reconnected by a reload
        _assert_once_in_order(r)
    await extra_sim.stop()


async def test_broken_and_restart_only_configs_are_refused(tmp_path: Path) -> None:
    """A broken file (syntax, wrong type, unknown sink type, a missing secret file) or a
    changed restart-only key is refused with exit 1 and the message; the old config runs on.
    With ``http_token`` set, `tradebus reload` without ``--token-file`` gets the 401; the token
    is in no output."""
    token = "reload-token-0b5e7f3c9a21d4e8"
    token_file = tmp_path / "ops.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    async with rig(tmp_path, feeds=1) as r:
        _config(r, None, "", daemon=f'http_token_file = "{token_file}"')
        good = r.config.read_text()
        proc = await r.start()
        try:
            await r.until_ready(lambda b: b["ready"], 20)
            code, out = await _reload(r)
            assert code == 1, out
            assert "answered 401" in out
            code, out = await _reload(r, "--token-file", str(tmp_path / "absent"))
            assert code == 2
            assert (
                out.strip()
                == "tradebus reload: --token-file: cannot read it: No such file or directory"
            )
            cases = [
                (good.replace("[[sinks]]", "[[sinks"), "not valid TOML"),
                (
                    good.replace("drain_timeout = 2.0", 'drain_timeout = "soon"'),
                    "daemon.drain_timeout",
                ),
                (good + '\n[[sinks]]\nname = "k"\ntype = "kafka"\n', "sinks[1].type: unknown"),
                (
                    good.replace('api_key = "', 'api_key_file = "/nonexistent/key"\n#'),
                    "sources[0].api_key_file: cannot read",
                ),
                (
                    good.replace('log_format = "json"', 'log_format = "console"'),
                    "daemon.log_format",
                ),
                (good.replace(f'"{r.state}"', f'"{tmp_path}/elsewhere"'), "daemon.state_dir"),
            ]
            url = f"http://127.0.0.1:{r.http}"
            for text, expected in cases:
                r.config.write_text(text)
                code, out = await _reload(r, "--url", url, "--token-file", str(token_file))
                assert code == 1, out
                assert "reload refused" in out
                assert expected in out
                assert token not in out
            status, body = await r.readyz()
            assert status == 200
            assert body["reload"]["generation"] == 1
            assert body["reload"]["last_result"] == "refused"
            r.config.write_text(good)
            code, out = await _reload(r, "--dry-run", "--token-file", str(token_file))
            assert code == 0, out
            assert "sinks kept: archive" in out
            assert token not in out
            metrics = await _metrics(r)
            assert f'tradebus_config_reloads_total{{result="refused"}} {len(cases)}.0' in metrics
            assert "config generation 1, last reload: refused" in await _status(r)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_a_webhook_whose_receiver_hangs_does_not_hold_the_reload(tmp_path: Path) -> None:
    """A webhook added while its receiver hangs, then removed: each reload returns at once,
    the removal drains within drain_timeout in the background, the file sink goes on."""
    async with rig(tmp_path, feeds=1) as r:
        r.receiver.mode = "hang"
        _config(r, None, "")
        proc = await r.start()
        try:
            await r.until_ready(lambda b: b["ready"], 20)
            hook = r.hook("jsonl", "timeout = 30.0\n")
            for sinks in (hook, ""):
                _config(r, None, sinks)
                started = time.monotonic()
                code, out = await _reload(r)
                assert code == 0, out
                assert time.monotonic() - started < 5.0
            await wait_for(lambda: r.receiver.requests >= 1, 10)
            before = len(r.lines())
            await wait_for(lambda: len(r.lines()) > before + 10, 10)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_a_sink_that_cannot_open_is_named_by_readyz_until_a_reload_applies(
    tmp_path: Path,
) -> None:
    """An added file sink whose directory is a file: the reload is partial (exit 1), /readyz
    names the sink and why under ``reload.failed_sinks`` and `tradebus status` marks its row
    and names it under the generation, through a refused reload too (whose own problem
    replaces the partial one's); the next applied reload clears both. The added sink runs
    all the same, retrying its open (a receiver down at reload time loses nothing): it
    delivers once its directory exists. The file sink already running goes on."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    bad = f'\n[[sinks]]\nname = "side"\ntype = "file"\npath = "{blocker}/side.jsonl"\n'
    async with rig(tmp_path, feeds=1) as r:
        _config(r, None, "")
        good = r.config.read_text()
        proc = await r.start()
        try:
            await r.until_ready(lambda b: b["ready"], 20)
            _, body = await r.readyz()
            assert body["reload"]["failed_sinks"] == {}
            _config(r, None, bad)
            code, out = await _reload(r)
            assert code == 1, out
            assert "reload partial" in out
            assert "sinks.side: " in out
            # Not the status: the sink runs on in delivery, retrying its open, and is not
            # ready (hence neither is the daemon) once delivery has reported it failing.
            _, body = await r.readyz()
            assert body["sinks"]["archive"]["ready"], body
            failed = body["reload"]["failed_sinks"]
            assert list(failed) == ["side"], failed
            assert "cannot open" in failed["side"]
            assert body["reload"]["generation"] == 2
            not_applied = f"  not applied: sink side (cannot open {blocker}/side.jsonl"
            shown = await _status(r)
            assert "config generation 2, last reload: partial" in shown
            assert sum(line.startswith(not_applied) for line in shown) == 1, shown
            assert _row(shown, "side")[2:4] == ["(reload", "failed)"], shown
            # The sink that could not be added runs all the same, retrying its open: the next
            # plan keeps it, and once its directory exists it delivers with no reload at all.
            code, out = await _reload(r, "--dry-run")
            assert code == 0, out
            assert "sinks kept: archive, side" in out, out
            blocker.unlink()
            blocker.mkdir()
            await wait_for((blocker / "side.jsonl").exists, 20)
            await wait_for(lambda: (blocker / "side.jsonl").stat().st_size > 0, 10)
            r.config.write_text(good.replace("[[sinks]]", "[[sinks"))
            code, out = await _reload(r, "--url", f"http://127.0.0.1:{r.http}")
            assert code == 1, out
            assert "reload refused" in out
            _, body = await r.readyz()
            assert list(body["reload"]["failed_sinks"]) == ["side"]
            shown = await _status(r)
            assert "config generation 2, last reload: refused" in shown
            assert any(line.startswith(not_applied) for line in shown), shown
            assert _row(shown, "side")[2:4] == ["(reload", "failed)"], shown
            r.config.write_text(good)
            code, out = await _reload(r)
            assert code == 0, out
            _, body = await r.readyz()
            assert body["reload"]["failed_sinks"] == {}
            assert body["reload"]["generation"] == 3
            shown = await _status(r)
            assert "config generation 3, last reload: applied" in shown
            assert not any("not applied" in line for line in shown), shown
            assert not any("reload failed" in line for line in shown), shown
            before = len(r.lines())
            await wait_for(lambda: len(r.lines()) > before + 10, 10)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0


# --- four kinds of source, thirty reloads --------------------------------------------------

Sim: TypeAlias = TtmtSimulator | TpAlertsSimulator | TraderWsSimulator | Mt4BridgeSimulator


def _connections(sim: Sim) -> int:
    """The connections ``sim`` has taken (each simulator counts its own way)."""
    if isinstance(sim, TtmtSimulator):
        return len(sim.attempts)
    if isinstance(sim, TpAlertsSimulator):
        return sim.attempts
    if isinstance(sim, TraderWsSimulator):
        return len(sim.connections)
    return len(sim.of("GET", "/events"))


class _Touched:
    """A source the plan adds, removes, changes and rotates the secret file of: ``version``
    names its resolved config, so two versions differ exactly when a reload restarts it.
    ``secret`` is the key read from a file (``<secret>_file``), ``tweak`` a key of no
    consequence that a change flips, ``accept`` tells the simulator which secret to take."""

    def __init__(
        self,
        sim: Sim,
        secret: str,
        keys: list[str],
        tweak: str,
        accept: Callable[[str], None] | None = None,
    ) -> None:
        self.sim, self.secret, self.keys, self.tweak_key = sim, secret, keys, tweak
        self.accept = accept
        self.present, self.key, self.tweak = True, 0, False
        self.connects = 1  # what the simulator should have counted by now

    def rotate(self) -> None:
        self.key = 1 - self.key
        if self.accept is not None:  # a simulator that takes one secret takes the new alone
            self.accept(self.keys[self.key])

    def reached(self) -> bool:
        return _connections(self.sim) >= self.connects

    def version(self) -> tuple[int, bool] | None:
        return (self.key, self.tweak) if self.present else None

    def source(self, name: str, secret_file: Path) -> dict[str, object]:
        secret_file.write_text(self.keys[self.key] + "\n")
        secret_file.chmod(0o600)
        table = {k: v for k, v in self.sim.source_table(name).items() if k != self.secret}
        return {
            **table,
            f"{self.secret}_file": str(secret_file),
            "required": False,
            self.tweak_key: 99 if self.tweak else 98,
        }


def _touched_sources() -> dict[str, _Touched]:
    """One source of each kind, each on a simulator of its own, its secret in a file that
    reloads rotate between two values."""
    keys = ["ttmt-key-one-5c1f", "ttmt-key-two-9a7e"]
    passwords = ["mt4-pass-one-3b8d", "mt4-pass-two-e42c"]
    tokens = ["tp-token-one-71d0", "tp-token-two-c83a"]
    ws_passwords = ["ws-pass-one-2f96", "ws-pass-two-b05d"]
    rot = TtmtSimulator(seed=6, rate=40.0, api_keys=tuple(keys))  # takes both keys
    bridge = Mt4BridgeSimulator(rate=10.0, seed=6, password=passwords[0], login=120046)
    alerts = TpAlertsSimulator(seed=6, rate=10.0, token=tokens[0])
    ws = TraderWsSimulator(username="u2", password=ws_passwords[0], rate=10.0, seed=6)

    def take_password(password: str) -> None:
        bridge.password = password

    def take_token(token: str) -> None:
        alerts.token = token

    def take_ws_password(password: str) -> None:
        ws.password = password

    return {
        "rot": _Touched(rot, "api_key", keys, "symbol_cache"),
        "bridge": _Touched(bridge, "password", passwords, "idle_timeout", take_password),
        "alerts": _Touched(alerts, "token", tokens, "symbol_cache", take_token),
        "ws": _Touched(ws, "password", ws_passwords, "idle_timeout", take_ws_password),
    }


async def test_thirty_random_reloads_with_all_four_kinds_of_source(tmp_path: Path) -> None:
    """Four sources (one of each kind) stream into a file sink while 30 seeded reloads add,
    remove and change a second sink; change, remove and re-add four more sources (one of each
    kind) and rotate their secret files; or change nothing. Each plan is what the change asks
    for, no more; the four never touched keep their one connection, each touched one has one
    more per restart, and connects with the rotated secret (the TradingPartners, Trader WS
    and MT4 simulators take the current one alone); the file sink holds every journaled
    event once, in seq order."""
    rng = random.Random(2028)
    kept: dict[str, Sim] = {
        "tt": TtmtSimulator(seed=5, rate=80.0),
        "tp": TpAlertsSimulator(seed=5, rate=20.0),
        "tw": TraderWsSimulator(username="u", password="pw-0d41", rate=10.0, seed=5),
        "mt": Mt4BridgeSimulator(rate=10.0, seed=5, trade_interval=1.0),
    }
    touched = _touched_sources()
    sims: list[Sim] = [*kept.values(), *(t.sim for t in touched.values())]
    for sim in sims:
        await sim.start()
    side: str | None = None  # the second sink's path and filter, when there is one
    done: set[str] = set()
    by_source: set[str] = set()  # the same, for each touched source

    def write(r: Rig) -> None:
        tables = [{**sim.source_table(name)} for name, sim in kept.items()]
        tables += [
            t.source(name, tmp_path / f"{name}.secret") for name, t in touched.items() if t.present
        ]
        sources = "".join(
            "\n[[sources]]\n" + toml_table(t) + "reconnect_min = 0.05\nreconnect_max = 0.2\n"
            for t in tables
        )
        sinks = "" if side is None else f'\n[[sinks]]\nname = "side"\ntype = "file"\n{side}'
        r.config.write_text(
            f'[daemon]\nlog_format = "json"\nstate_dir = "{r.state}"\ndrain_timeout = 2.0\n'
            f'http = "127.0.0.1:{r.http}"\n{sources}'
            f'\n[[sinks]]\nname = "archive"\ntype = "file"\npath = "{r.out}"\n{sinks}'
        )

    async def reload(r: Rig) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{r.http}/-/reload") as resp,
        ):
            assert resp.status == 200, await resp.text()
            outcome: dict[str, Any] = await resp.json()
        assert outcome["result"] == "applied", outcome
        return outcome

    def connected(name: str) -> Callable[[dict[str, Any]], bool]:
        return lambda b: name in b["sources"] and b["sources"][name]["connected"]

    async with rig(tmp_path, feeds=0) as r:
        write(r)
        proc = await r.start()
        try:
            await r.until_ready(
                lambda b: b["ready"] and all(connected(n)(b) for n in [*kept, *touched]), 30
            )
            # Each touched source is rotated twice, changed once, removed and re-added (a
            # rotation or change while it is away restarts nothing); the order is the seed's.
            steps: list[tuple[str, _Touched | None]] = [
                (action, t)
                for t in touched.values()
                for action in ("rotate", "rotate", "change", "toggle", "toggle")
            ]
            steps += [("sink", None)] * 6 + [("noop", None)] * 4
            rng.shuffle(steps)
            for n, (action, target) in enumerate(steps):
                before = {name: t.version() for name, t in touched.items()}
                side_before = side
                if action == "sink":
                    side = rng.choice(
                        [
                            None,
                            f'path = "{tmp_path}/side0.jsonl"\n',
                            f'path = "{tmp_path}/side1.jsonl"\n',
                            f'path = "{tmp_path}/side1.jsonl"\ntypes = ["status."]\n',
                        ]
                    )
                elif target is None:  # "noop": the same file again
                    pass
                elif action == "rotate":
                    target.rotate()
                elif action == "change":
                    target.tweak = not target.tweak
                elif action == "toggle":
                    target.present = not target.present
                write(r)
                outcome = await reload(r)
                plan = outcome["plan"]
                expected: dict[str, list[str]] = {"restarted": [], "added": [], "removed": []}
                for name, t in touched.items():
                    old, new = before[name], t.version()
                    if old != new:
                        verb = "added" if old is None else "removed" if new is None else "restarted"
                        expected[verb].append(name)
                        done.add(f"{action} {verb}")
                        by_source.add(f"{name} {action} {verb}")
                for verb, names in expected.items():
                    assert sorted(plan["sources"][verb]) == sorted(names), (n, action, plan)
                assert set(kept) <= set(plan["sources"]["kept"]), plan
                sinks = {v: plan["sinks"][v] for v in ("added", "removed", "restarted")}
                if side == side_before:
                    assert sinks == {"added": [], "removed": [], "restarted": []}, plan
                else:
                    verb = (
                        "added"
                        if side_before is None
                        else "removed"
                        if side is None
                        else "restarted"
                    )
                    assert sinks[verb] == ["side"], plan
                    done.add(f"sink {verb}")
                assert "archive" in plan["sinks"]["kept"]
                if not any(expected.values()) and side == side_before:
                    done.add("no change")
                for name in expected["added"] + expected["restarted"]:
                    t = touched[name]
                    t.connects += 1
                    await wait_for(t.reached, 10)
                    await r.until_ready(connected(name), 10)
                status, body = await r.readyz()
                assert status == 200, body
                assert body["reload"]["generation"] == n + 2
            # The seed drew every kind of reload the issue names, for every kind of source.
            assert {
                f"{name} {change}"
                for name in touched
                for change in ("rotate restarted", "toggle removed", "toggle added")
            } <= by_source, sorted(by_source)
            assert {
                "change restarted",
                "sink added",
                "sink removed",
                "sink restarted",
                "no change",
            } <= done, done
            # Events flow after the last reload, from each of the four.
            counts = Counter(line["source"] for line in r.lines())
            await wait_for(
                lambda: all(
                    c[s] > counts[s]
                    for c in [Counter(x["source"] for x in r.lines())]
                    for s in kept
                ),
                15,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        for name, sim in kept.items():
            assert _connections(sim) == 1, name  # never reconnected by a reload
        for name, t in touched.items():
            assert _connections(t.sim) == t.connects, name  # each restart one connection more
        journal, _ = Journal.open(r.state)
        last = journal.last_seq
        journal.close()
        lines = r.lines()
        assert [line["seq"] for line in lines] == list(range(1, last + 1))
        assert len({line["id"] for line in lines}) == len(lines), "an event written twice"
        assert not r.lost("tt")
        r.assert_nothing_lost("tt", r.ttmt_ids()["tt"][-1])
    for sim in sims:
        await sim.stop()
