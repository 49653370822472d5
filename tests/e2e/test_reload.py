"""Reloading a running daemon's config by difference: `tradebus reload`, SIGHUP, refusals."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import aiohttp

from tests.e2e.delivery_rig import Rig, rig, toml_table, wait_for
from tests.e2e.process import run_cli
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
            _, shown, _ = await run_cli("status", "--url", url, "--interval", "0")
            assert "config generation 1, last reload: refused" in shown.decode()
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
    names the sink and why under ``reload.failed_sinks``, through a refused reload too; the
    next applied reload clears it. The file sink already running goes on."""
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
            status, body = await r.readyz()
            assert status == 200, body  # the sinks that run are all well
            failed = body["reload"]["failed_sinks"]
            assert list(failed) == ["side"], failed
            assert "cannot open" in failed["side"]
            assert body["reload"]["generation"] == 2
            # The sink that could not be added is not running: the next plan adds it again.
            code, out = await _reload(r, "--dry-run")
            assert code == 0, out
            assert "sinks added: side" in out
            r.config.write_text(good.replace("[[sinks]]", "[[sinks"))
            code, out = await _reload(r, "--url", f"http://127.0.0.1:{r.http}")
            assert code == 1, out
            assert "reload refused" in out
            _, body = await r.readyz()
            assert list(body["reload"]["failed_sinks"]) == ["side"]
            r.config.write_text(good)
            code, out = await _reload(r)
            assert code == 0, out
            _, body = await r.readyz()
            assert body["reload"]["failed_sinks"] == {}
            assert body["reload"]["generation"] == 3
            before = len(r.lines())
            await wait_for(lambda: len(r.lines()) > before + 10, 10)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
