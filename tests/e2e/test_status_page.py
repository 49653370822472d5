"""The status page (``GET /``) in headless Chromium (Debian's, driven by Playwright) against a
daemon running the four simulators."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from tests import tools
from tests.e2e.delivery_rig import free_port
from tests.e2e.process import start_daemon, write_config
from tradebus.cli import _simulator_modules
from tradebus.simulators.base import Simulator


@pytest.fixture
async def four() -> AsyncIterator[list[Simulator]]:
    sims = [module.for_demo(7) for module in _simulator_modules().values()]
    for sim in sims:
        await sim.start()
    yield sims
    for sim in sims:
        await sim.stop()


def state(page: Page, source: str) -> Locator:
    return page.locator(f'#sources tr[data-name="{source}"] td.state')


async def cell(page: Page, table: str, name: str, column: int) -> str:
    text = await page.locator(f'#{table} tr[data-name="{name}"] td').nth(column).text_content()
    return text or ""


@pytest.mark.tool("chromium")
async def test_the_status_page_live(tmp_path: Path, four: list[Simulator]) -> None:
    """No request leaves 127.0.0.1; every source and sink is listed; counts move within 2 s;
    a stopped simulator's row says disconnected within 5 s; the tail's order. filter shows
    order events only; the config generation and the last reload show, and a sink a reload
    could not open is named and marked; a screenshot is kept."""
    port = free_port()
    config = write_config(tmp_path, four, daemon=f'http = "127.0.0.1:{port}"\n')
    daemon = (await start_daemon(config, quiet=True)).proc
    requests: list[str] = []
    problems: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=tools.path("chromium"))
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            for _ in range(100):  # the daemon's endpoint comes up
                try:
                    await page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # noqa: BLE001 - connection refused until it listens
                    await asyncio.sleep(0.1)
            names = [f"src{i}" for i in range(4)]
            for name in names:
                await page.wait_for_selector(f'#sources tr[data-name="{name}"]', timeout=10_000)
            for sink in ("archive", "console"):
                await page.wait_for_selector(f'#sinks tr[data-name="{sink}"]', timeout=5_000)
            # (The page's CSP forbids eval, so the waits are Playwright's locator assertions.)
            for name in names:
                await expect(state(page, name)).to_have_text("connected", timeout=15_000)
            # Counts move: the sources' event totals change within 2 s.
            before = [await cell(page, "sources", n, 5) for n in names]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0
            while [await cell(page, "sources", n, 5) for n in names] == before:
                assert loop.time() < deadline, "no count moved within 2 s"
                await asyncio.sleep(0.05)  # what the page shows: nothing to await on it
            # The config generation, and a reload (SIGHUP re-reads the same file: applied).
            config_line = page.locator("#config")
            await expect(config_line).to_have_text("generation 1, last reload: none yet")
            daemon.send_signal(signal.SIGHUP)
            await expect(config_line).to_have_text(
                re.compile(r"^generation 2, last reload: applied at \d\d:\d\d:\d\d UTC$"),
                timeout=10_000,
            )
            # A reload that cannot open the sink it adds: partial, the sink named and marked.
            blocker = tmp_path / "not-a-dir"
            blocker.write_text("")
            with config.open("a") as f:
                f.write(f'\n[[sinks]]\nname = "side"\ntype = "file"\npath = "{blocker}/x.jsonl"\n')
            daemon.send_signal(signal.SIGHUP)
            await expect(config_line).to_contain_text("generation 3, last reload: partial at ")
            await expect(page.locator("#not-applied")).to_contain_text(
                "not applied: sink side (cannot open "
            )
            side = page.locator('#sinks tr[data-name="side"] td.state')
            await expect(side).to_contain_text("(reload failed)", timeout=5_000)
            # The live tail with an order. filter.
            await page.fill("#f-types", "order.")
            await page.click("button[type=submit]")
            rows = page.locator("#tail tr")
            await expect(rows.nth(1)).to_be_attached(timeout=30_000)
            types = [
                await rows.nth(i).get_attribute("data-type") for i in range(await rows.count())
            ]
            assert all((t or "").startswith("order.") for t in types), types
            # A stopped simulator: its row turns to disconnected within 5 s.
            await four[0].stop()
            await expect(state(page, "src0")).to_have_text("disconnected", timeout=5_000)
            await expect(page.locator("#ready")).to_have_text("NOT READY")
            await page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
            await browser.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(daemon.wait(), 20)
    assert (tmp_path / "status-page.png").stat().st_size > 1000
    outside = [
        u for u in requests if urlsplit(u).hostname != "127.0.0.1" and not u.startswith("data:")
    ]
    assert outside == []
    assert problems == []  # no CSP violation, no script error
