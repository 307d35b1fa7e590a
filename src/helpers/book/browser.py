"""Every page of the built book opened in a real browser: headless Chromium driven over the Chrome DevTools Protocol
(a websocket, `websocket-client`), the pages served from a local HTTP server as a web host would serve them.

For each page `check_page` records console errors, uncaught exceptions and failed resource loads, images that do
not decode, raw Markdown left in the visible text (table rules, `$$`, code fences, unresolved roles), MathJax
errors, and, for each explorer (`helpers.book.explorer`), whether changing each of its controls with the mouse or
the keyboard shows a different figure that decodes. It also writes a full-page screenshot.

`python -m helpers.book.browser` (`make screenshots`, after `make book`) checks the book in `_build/html`, writes
`_build/screenshots/<page>.png` and exits 1 if a page has a problem; the browser test runs the same checks on the
smoke book. Chromium comes from the system (`make test` installs Debian's `chromium` where it is missing); nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

__all__ = ["BROWSER_ENV", "CHROMIUM_NAMES", "find_chromium", "DevTools", "chromium", "serve", "book_pages",
           "PageReport", "check_page", "check_book", "main"]

BROWSER_ENV = "BTS_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
WIDTH, HEIGHT = 1280, 900
MAX_SHOT = 16000  # px: taller pages are cut (Chromium's largest capture is about 16384 px)
SKIP_DIRS = {"_static", "_sources", "_images", "source-notebooks", "screenshots"}


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: `$BTS_CHROMIUM`, else the first of `CHROMIUM_NAMES` on the PATH."""
    if os.environ.get(BROWSER_ENV):
        return os.environ[BROWSER_ENV]
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """A Chrome DevTools Protocol session on one page target: `call` sends a command and returns its result;
    events that arrive meanwhile are kept in `events` for `wait_for` and the page checks."""

    def __init__(self, url: str, *, timeout: float = 60.0):
        import websocket

        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self.events: list[dict] = []
        self._id = 0

    def _receive(self, deadline: float) -> dict:
        self.ws.settimeout(max(0.05, deadline - time.monotonic()))
        return json.loads(self.ws.recv())

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        """The first kept or incoming event named `method` (removed from `events`)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            message = self._receive(deadline)
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited); a thrown error raises."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()


@contextlib.contextmanager
def chromium(executable: str | None = None, *, timeout: float = 60.0) -> Iterator[DevTools]:
    """Start headless Chromium with a fresh profile and yield a DevTools session on its page; stop it after."""
    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError(f"no Chromium: install it (Debian: apt-get install chromium) or set {BROWSER_ENV}")
    profile = Path(tempfile.mkdtemp(prefix="bts-chromium-"))
    log = open(profile / "stderr.log", "wb")
    process = subprocess.Popen(
        [executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server",
         "--mute-audio", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log)
    session = None
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (profile / "stderr.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{executable} did not open its DevTools port (exit {process.poll()}): {tail}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=timeout).read())
        page = next(t for t in targets if t.get("type") == "page")
        session = DevTools(page["webSocketDebuggerUrl"], timeout=timeout)
        for domain in ("Page", "Runtime", "Log", "Network"):
            session.call(f"{domain}.enable")
        session.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                     mobile=False)
        yield session
    finally:
        if session is not None:
            session.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def book_pages(html_dir: Path) -> list[Path]:
    """The pages of a built book: every HTML file but the theme's and Sphinx's folders and redirect stubs."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        if SKIP_DIRS & set(path.relative_to(html_dir).parts[:-1]):
            continue
        text = path.read_text(errors="replace")
        if len(text) < 2000 and 'http-equiv="Refresh"' in text:  # index.html: a redirect to the first page
            continue
        pages.append(path)
    return pages


@dataclass
class PageReport:
    """What one page did in the browser."""

    page: str
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads, MathJax errors
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    raw_markdown: list[str] = field(default_factory=list)
    explorers: int = 0
    controls: int = 0
    dead_controls: list[str] = field(default_factory=list)  # controls whose change did not show a new figure
    verdict_tables: int = 0
    claim_ids: list[str] = field(default_factory=list)  # element ids claim-* (the scorecard's rows)
    claim_links: list[str] = field(default_factory=list)  # hrefs to scorecard.html#claim-*
    screenshot: Path | None = None
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        return ([f"error: {e}" for e in self.errors] + [f"broken image: {i}" for i in self.broken_images]
                + [f"raw Markdown: {t}" for t in self.raw_markdown]
                + [f"dead control: {c}" for c in self.dead_controls])


# Waits for MathJax (where the page loads it) to typeset, then lists MathJax errors.
_MATHJAX = """new Promise(function (done) {
  if (!document.querySelector('script[src*="mathjax"]')) { return done([]); }
  var start = Date.now();
  (function wait() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(function () {
        done(Array.prototype.map.call(document.querySelectorAll("mjx-merror"), function (e) {
          return "MathJax: " + e.textContent; }));
      }, function (e) { done(["MathJax failed: " + e]); });
    } else if (Date.now() - start > 20000) { done(["MathJax did not start within 20 s"]); }
    else { setTimeout(wait, 50); }
  })();
})"""

# Loads every image (lazy ones too), waits for each to decode, and lists the ones that did not.
_IMAGES = """(async function () {
  var images = Array.prototype.slice.call(document.images);
  images.forEach(function (i) { i.loading = "eager"; });
  var broken = [];
  await Promise.all(images.map(function (i) {
    var timeout = new Promise(function (r) { setTimeout(function () { r("timeout"); }, 15000); });
    return Promise.race([i.decode().then(function () { return "ok"; }, function () { return "failed"; }), timeout])
      .then(function (state) {
        if (state !== "ok" || !i.complete || i.naturalWidth === 0) {
          broken.push((i.getAttribute("src") || "(no src)").slice(0, 120) + " [" + state + "]");
        }
      });
  }));
  return {count: images.length, broken: broken};
})()"""

# The visible text outside code (pre, code) and scripts, to look for Markdown that did not render.
_VISIBLE_TEXT = """(function () {
  var style = document.createElement("style");
  style.textContent = "pre, code, .highlight { display: none !important; }";
  document.head.appendChild(style);
  var text = document.body.innerText;
  style.remove();
  return text;
})()"""

RAW_MARKDOWN = ("|---", "| ---", "|:--", "| :--", "$$", "```", "{numref}", "{ref}", "{doc}", "{glue", ":::")

# Facts about the page: explorers and their controls, verdict tables, claim ids and links to them.
_FACTS = """(function () {
  function ids(selector) { return Array.prototype.map.call(document.querySelectorAll(selector),
                                                           function (e) { return e.id; }); }
  return {
    explorers: Array.prototype.map.call(document.querySelectorAll(".bts-explorer"), function (e) {
      return {id: e.id, controls: Array.prototype.map.call(e.querySelectorAll(".bts-control"), function (c) {
        return {name: c.getAttribute("data-control"), kind: c.getAttribute("data-kind")}; })};
    }),
    verdictTables: Array.prototype.filter.call(document.querySelectorAll("table"), function (t) {
      return Array.prototype.some.call(t.querySelectorAll("th"), function (h) {
        return h.textContent.trim() === "verdict"; }) && t.querySelectorAll("tbody tr").length > 0;
    }).length,
    claimIds: ids('[id^="claim-"]'),
    claimLinks: Array.prototype.map.call(document.querySelectorAll('a[href*="scorecard.html#"]'),
                                         function (a) { return a.getAttribute("href"); })
  };
})()"""


def _errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among DevTools events."""
    out = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console." + params["type"] + ": "
                       + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            out.append(f"failed load: {params.get('errorText')} ({params.get('type')})")
        elif method == "Network.responseReceived" and params.get("response", {}).get("status", 200) >= 400:
            response = params["response"]
            out.append(f"HTTP {response['status']}: {response.get('url')}")
    return out


def _center(tools: DevTools, selector: str) -> tuple[float, float]:
    """Scroll the element into view and return its center in viewport coordinates."""
    box = tools.evaluate(f"""(function () {{
      var e = document.querySelector({json.dumps(selector)});
      e.scrollIntoView({{block: "center"}});
      var r = e.getBoundingClientRect();
      return [r.left + r.width / 2, r.top + r.height / 2];
    }})()""")
    return box[0], box[1]


def _click(tools: DevTools, selector: str) -> None:
    x, y = _center(tools, selector)
    tools.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    for kind in ("mousePressed", "mouseReleased"):
        tools.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def _press(tools: DevTools, selector: str, key: str, code: int) -> None:
    _center(tools, selector)
    tools.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
    for kind in ("rawKeyDown", "keyUp"):
        tools.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code,
                   nativeVirtualKeyCode=code)


def _figure_src(tools: DevTools, explorer: str) -> str:
    return tools.evaluate(f"document.querySelector('#{explorer} img.bts-explorer-figure').getAttribute('src')")


def _decodes(tools: DevTools, explorer: str) -> bool:
    return bool(tools.evaluate(f"""(function () {{
      var i = document.querySelector('#{explorer} img.bts-explorer-figure');
      return i.decode().then(function () {{ return i.naturalWidth > 0; }}, function () {{ return false; }});
    }})()"""))


def _exercise(tools: DevTools, explorer: str, index: int, name: str, kind: str) -> str | None:
    """Change control `index` of an explorer as a reader would (click the next radio button; arrow key on a menu or
    slider); None if the figure changed to another image that decodes, else what went wrong."""
    control = f"#{explorer} .bts-explorer-controls > :nth-child({index + 1})"
    before = _figure_src(tools, explorer)
    if kind == "radio":
        checked = tools.evaluate(f"""Array.prototype.findIndex.call(
            document.querySelectorAll({json.dumps(control + ' input')}), function (i) {{ return i.checked; }})""")
        _click(tools, f"{control} label:nth-of-type({2 if checked == 0 else 1}) input")
    elif kind == "select":
        _press(tools, f"{control} select", "ArrowDown", 40)
    elif kind == "range":
        _press(tools, f"{control} input", "ArrowRight", 39)
    else:
        return f"{name}: unknown control kind {kind!r}"
    after = _figure_src(tools, explorer)
    if after == before:
        return f"{explorer} {name} ({kind}): the figure did not change"
    if not _decodes(tools, explorer):
        return f"{explorer} {name} ({kind}): the new figure does not decode"
    return None


def _screenshot(tools: DevTools, path: Path) -> None:
    """A full-page PNG: the viewport made as tall as the page (at most MAX_SHOT px), captured, then set back (a
    capture beyond the viewport shifted this theme's layout sideways)."""
    tools.evaluate("window.scrollTo(0, 0)")
    height = min(MAX_SHOT, int(tools.call("Page.getLayoutMetrics")["cssContentSize"]["height"]))
    tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=max(height, HEIGHT), deviceScaleFactor=1,
               mobile=False)
    try:
        shot = tools.call("Page.captureScreenshot", format="png")
    finally:
        tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                   mobile=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def check_page(tools: DevTools, url: str, *, screenshot: Path | None = None, name: str = "") -> PageReport:
    """Load `url` and check it (see the module docstring); write a full-page screenshot to `screenshot`."""
    start = time.perf_counter()
    report = PageReport(page=name or url)
    tools.events.clear()
    navigation = tools.call("Page.navigate", url=url)
    if navigation.get("errorText"):
        report.errors.append(f"navigation: {navigation['errorText']}")
        return report
    tools.wait_for("Page.loadEventFired", timeout=60)
    report.errors += tools.evaluate(_MATHJAX)
    images = tools.evaluate(_IMAGES)
    report.images, report.broken_images = images["count"], images["broken"]
    text = tools.evaluate(_VISIBLE_TEXT)
    for line in text.splitlines():
        if any(marker in line for marker in RAW_MARKDOWN):
            report.raw_markdown.append(line.strip()[:160])
    facts = tools.evaluate(_FACTS)
    report.verdict_tables, report.claim_ids, report.claim_links = (facts["verdictTables"], facts["claimIds"],
                                                                   facts["claimLinks"])
    if screenshot is not None:  # before the controls are touched: the page as a reader first sees it
        _screenshot(tools, screenshot)
        report.screenshot = screenshot
    report.explorers = len(facts["explorers"])
    for explorer in facts["explorers"]:
        for index, control in enumerate(explorer["controls"]):
            report.controls += 1
            problem = _exercise(tools, explorer["id"], index, control["name"], control["kind"])
            if problem:
                report.dead_controls.append(problem)
    time.sleep(0.2)  # late console messages of the interactions
    tools.call("Runtime.evaluate", expression="1")  # drain events that arrived meanwhile
    report.errors += _errors(tools.events)
    report.seconds = time.perf_counter() - start
    return report


def check_book(html_dir: Path, screenshots: Path | None = None, *, executable: str | None = None,
               pages: list[Path] | None = None) -> list[PageReport]:
    """Check every page of the book in `html_dir` (or `pages`), writing `<screenshots>/<page>.png` if given."""
    html_dir = Path(html_dir)
    pages = book_pages(html_dir) if pages is None else pages
    names = [p.stem for p in pages]
    if len(set(names)) < len(names):  # same file name in two folders: name screenshots by path
        names = ["-".join(p.relative_to(html_dir).with_suffix("").parts) for p in pages]
    reports = []
    with serve(html_dir) as base, chromium(executable) as tools:
        for page, name in zip(pages, names):
            url = base + page.relative_to(html_dir).as_posix()
            shot = Path(screenshots) / f"{name}.png" if screenshots is not None else None
            reports.append(check_page(tools, url, screenshot=shot, name=page.relative_to(html_dir).as_posix()))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.book.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="_build", help="the book's build folder (default: _build)")
    args = parser.parse_args(argv)
    build = Path(args.build)
    reports = check_book(build / "html", build / "screenshots")
    bad = 0
    for r in reports:
        print(f"{r.page}: {r.images} images, {r.explorers} explorers ({r.controls} controls), "
              f"{len(r.problems)} problems, {r.seconds:.1f} s; screenshot {r.screenshot}")
        for problem in r.problems:
            print(f"  {problem}")
        bad += bool(r.problems)
    print(f"{len(reports)} pages, {bad} with problems; screenshots in {build / 'screenshots'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
