"""Drive headless Chromium over the DevTools protocol (loopback only): type, read the page, take screenshots.

A test helper, like ``tables.py``: no test collects from it. Chromium runs with a fresh profile, no network
services, and the page's own Content-Security-Policy; evaluation through the protocol is the browser's, not
the page's, so the policy stays as strict as it ships.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


class Page:
    """One page of a headless Chromium: ``call`` a protocol method, ``js`` an expression's value."""

    def __init__(self, ws: Any):
        self._ws = ws
        self._id = 0

    async def call(self, method: str, **params: Any) -> dict:
        self._id += 1
        ident = self._id
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads((await self._ws.receive()).data)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> None:
        """Poll ``expression`` until true; an evaluation cut off by a navigation in flight counts as not yet."""
        end = time.monotonic() + timeout
        while not await self._settled(expression):
            if time.monotonic() > end:
                raise TimeoutError(expression)
            await asyncio.sleep(0.1)

    async def _settled(self, expression: str) -> Any:
        try:
            return await self.js(expression)
        except RuntimeError as exc:
            # Chromium answers -32000 "Inspected target navigated or closed" (or "Execution context was
            # destroyed") when the page being waited for replaces the one the expression started in.
            if "navigated or closed" in str(exc) or "context was destroyed" in str(exc):
                return False
            raise

    async def type(self, selector: str, text: str) -> None:
        """Focus an element and type ``text`` key by key (each key fires the page's input handlers)."""
        await self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        for ch in text:
            await self.call("Input.dispatchKeyEvent", type="keyDown", text=ch, key=ch, unmodifiedText=ch)
            await self.call("Input.dispatchKeyEvent", type="keyUp", key=ch)

    async def screenshot(self, path: Path, selector: str | None = None) -> Path:
        """A PNG of the viewport, or of one element (scrolled into view, whole)."""
        params: dict[str, Any] = {"format": "png"}
        if selector:
            box = await self.js(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                " const r = e.getBoundingClientRect();"
                " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: Math.min(r.height, 1600)}; })()"
            )
            params |= {"clip": {**box, "scale": 1}, "captureBeyondViewport": True}
        data = (await self.call("Page.captureScreenshot", **params))["data"]
        path.write_bytes(base64.b64decode(data))
        return path


async def _open(chromium: str, url: str, profile: Path, size: tuple[int, int]):
    import aiohttp

    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={size[0]},{size[1]}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + 30
    while not port_file.is_file() or not port_file.read_text().strip():
        if time.monotonic() > end or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("Chromium did not open its DevTools port")
        await asyncio.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    return proc, port, aiohttp


def with_page(chromium: str, url: str, profile: Path, work, size: tuple[int, int] = (1280, 800)) -> Any:
    """Open ``url`` in headless Chromium, wait for the page's script, run ``await work(page)``, close."""

    async def main() -> Any:
        proc, port, aiohttp = await _open(chromium, url, profile, size)
        try:
            async with aiohttp.ClientSession() as http:
                end = time.monotonic() + 30
                while True:
                    async with http.get(f"http://127.0.0.1:{port}/json") as resp:
                        targets = await resp.json()
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages or time.monotonic() > end:
                        break
                    await asyncio.sleep(0.1)
                async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.call(
                        "Emulation.setDeviceMetricsOverride",
                        width=size[0],
                        height=size[1],
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    await page.wait_for("document.body && document.body.getAttribute('data-ready') === '1'")
                    return await work(page)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    return asyncio.run(main())


# WCAG 2.x contrast of every visible text node against the background it is drawn on (alpha-composited up
# the ancestors); large text (24px, or 18.66px bold) needs 3:1, the rest 4.5:1.
CONTRAST_JS = r"""
(() => {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0,0,0,0];
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => { const a = top[3] + bottom[3] * (1 - top[3]);
    if (a === 0) return [0,0,0,0];
    return [0,1,2].map(i => (top[i] * top[3] + bottom[i] * bottom[3] * (1 - top[3])) / a).concat([a]); };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const background = (el) => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const bg = parse(getComputedStyle(e).backgroundColor); if (bg[3] > 0) layers.push(bg); if (bg[3] >= 1) break; }
    let c = [255,255,255,1]; for (let i = layers.length - 1; i >= 0; i--) c = over(layers[i], c); return c; };
  const out = []; let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const el = n.parentElement; if (!el || el.closest("svg, script, style, [hidden]")) continue;
    const st = getComputedStyle(el); if (st.visibility === "hidden" || st.display === "none" || el.getClientRects().length === 0) continue;
    const bg = background(el); const fg = over(parse(st.color), bg);
    const l1 = lum(fg), l2 = lum(bg); const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(st.fontSize); const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    checked += 1;
    if (ratio < (large ? 3 : 4.5)) out.push({text: n.textContent.trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100, color: st.color, cls: el.className});
  }
  return {checked, failures: out};
})()
"""
