"""The ops endpoint beyond loopback: no start without ``http_token``; with it, 401 for a request
that lacks it, the probes open unless ``http_token_all``; the token never in a log line; a
browser signs in with the form."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from tests import tools
from tests.e2e.delivery_rig import Rig, rig
from tests.e2e.process import run_cli

ANY = "0.0.0.0"  # noqa: S104 - beyond loopback is what is tested
TOKEN = "ops-token-5d2c9e1a7b3f4e60"


def beyond(r: Rig) -> None:
    """The rig's config, its ops endpoint bound to every address."""
    text = r.config.read_text().replace(f'"127.0.0.1:{r.http}"', f'"{ANY}:{r.http}"')
    r.config.write_text(text)


async def test_beyond_loopback_without_a_token_the_daemon_refuses_to_start(
    tmp_path: Path,
) -> None:
    """Exit 2 with one config error line naming daemon.http_token, before listening."""
    async with rig(tmp_path, feeds=1) as r:
        r.write()
        beyond(r)
        code, _out, err = await run_cli("run", "-c", str(r.config))
    lines = err.decode().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("config error: daemon.http_token: required when http listens")


async def test_with_a_token_requests_without_it_get_401(tmp_path: Path) -> None:
    """/api/* needs the Bearer token (a wrong one too is 401); /metrics and /readyz stay open;
    the token, read from a file, appears in no log line of the daemon."""
    token_file = tmp_path / "ops.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    async with rig(tmp_path, feeds=1) as r:
        r.write(daemon=f'http_token_file = "{token_file}"')
        beyond(r)
        proc = await r.start(stderr=asyncio.subprocess.PIPE)
        base = f"http://127.0.0.1:{r.http}"
        try:
            await r.until_ready(lambda b: b["sources"]["feed0"]["connected"], 20)
            async with aiohttp.ClientSession() as http:
                for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
                    async with http.get(f"{base}/api/v1/events", headers=headers) as resp:
                        assert resp.status == 401
                        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                auth = {"Authorization": f"Bearer {TOKEN}"}
                async with http.get(f"{base}/api/v1/events?from=earliest", headers=auth) as resp:
                    assert resp.status == 200
                    assert b"data: " in await resp.content.readuntil(b"\n\n")
                for probe in ("/metrics", "/readyz", "/healthz"):
                    async with http.get(base + probe) as resp:
                        assert resp.status == 200, probe
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert b"ops_endpoint_listening" in err
    assert TOKEN.encode() not in err


async def test_http_token_all_closes_the_probes_too(tmp_path: Path) -> None:
    """With http_token_all, /metrics without the token is 401, with it 200."""
    async with rig(tmp_path, feeds=1) as r:
        r.write(daemon=f'http_token = "{TOKEN}"\nhttp_token_all = true')
        proc = await r.start()
        base = f"http://127.0.0.1:{r.http}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with aiohttp.ClientSession() as http:

                async def up() -> None:
                    while True:
                        try:
                            async with http.get(f"{base}/healthz", headers=auth) as resp:
                                if resp.status == 200:
                                    return
                        except aiohttp.ClientError:
                            await asyncio.sleep(0.05)  # not listening yet

                await asyncio.wait_for(up(), 20)
                async with http.get(f"{base}/metrics") as resp:
                    assert resp.status == 401
                async with http.get(f"{base}/metrics", headers=auth) as resp:
                    assert resp.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0


@pytest.mark.tool("chromium")
async def test_a_browser_signs_in_with_the_form(tmp_path: Path) -> None:
    """Chromium opens / and gets the form; a wrong token says so; the right one shows the live
    status page (its streams opened by the cookie); no CSP violation; the token in no log line."""
    problems: list[str] = []
    async with rig(tmp_path, feeds=1) as r:
        r.write(daemon=f'http_token = "{TOKEN}"')
        proc = await r.start(stderr=asyncio.subprocess.PIPE)
        try:
            await r.until_ready(lambda b: b["sources"]["feed0"]["connected"], 20)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=tools.path("chromium"))
                page = await browser.new_page()
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                await page.goto(f"http://127.0.0.1:{r.http}/")
                await page.fill("#token", "not-the-token-0000000000")
                await page.click("input[type=submit]")
                await expect(page.locator("p.err")).to_have_text("Wrong token.")
                await page.fill("#token", TOKEN)
                await page.click("input[type=submit]")
                row = page.locator('#sources tr[data-name="feed0"] td.state')
                await expect(row).to_have_text("connected", timeout=10_000)
                await browser.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
    # The wrong token's 401 is a console error of its own; anything else (a CSP violation) is not.
    assert [p for p in problems if "401" not in p] == []
    assert b"ops_login_failed" in err
    assert TOKEN.encode() not in err
    assert b"not-the-token" not in err
