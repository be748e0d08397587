"""The report as a reader sees it: every page of it loaded in Debian's headless Chromium with no
network, every console error and failed load collected, and a screenshot of the main page
checked to show something."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "install Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
VIEWPORT = (1280, 1024)
# A page that shows anything has text and lines in a few colours over a fair part of the view; an
# empty or failed page is one colour, or a handful from a lone heading.
MIN_COLOURS = 16
MIN_INK_SHARE = 0.01

# No network for the page: every name resolves to nothing and any connection goes to a closed
# port, so a reference outside the report fails as a failed load instead of being fetched.
OFFLINE_FLAGS = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]
# Headless as root (CI), in containers whose /dev/shm is small, with no GPU.
HEADLESS_FLAGS = ["--headless", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "--hide-scrollbars"]


class BrowserMissing(RuntimeError):
    pass


@dataclass
class PageCheck:
    """What the browser found on the report's pages; problems are empty when all is well."""
    page: Path
    pages_loaded: list[Path] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    distinct_colours: int = 0
    ink_share: float = 0.0     # share of the screenshot's pixels not in its most common colour

    @property
    def blank(self) -> bool:
        return self.distinct_colours < MIN_COLOURS or self.ink_share < MIN_INK_SHARE

    @property
    def problems(self) -> list[str]:
        found = [f"console error: {m}" for m in self.console_errors]
        found += [f"failed load: {m}" for m in self.failed_loads]
        if self.blank:
            found.append(f"screenshot {self.screenshot} looks blank: {self.distinct_colours} colours, "
                         f"{self.ink_share:.2%} of pixels off the background (needs {MIN_COLOURS} and "
                         f"{MIN_INK_SHARE:.0%})")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        return (f"screenshot: {self.screenshot} ({self.distinct_colours} colours, {self.ink_share:.0%} of "
                f"pixels off the background); pages loaded: {len(self.pages_loaded)}")


def require_browser(chromium: Path = CHROMIUM, chromedriver: Path = CHROMEDRIVER) -> None:
    missing = [str(p) for p in (chromium, chromedriver) if not p.is_file()]
    if missing:
        raise BrowserMissing(f"{' and '.join(missing)} not found: {INSTALL_HINT}")


@contextlib.contextmanager
def headless_chromium(timeout_s: float = 60, chromium: Path = CHROMIUM, chromedriver: Path = CHROMEDRIVER):
    """A Selenium driver of Debian's Chromium, offline, logging the console and the network.
    Both paths are given, so Selenium Manager never runs (it would download a driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_browser(chromium, chromedriver)
    # Chromedriver's throwaway profile and Chromium's singleton socket go in TMPDIR: a directory
    # of our own, removed afterwards, so nothing is left in /tmp.
    with tempfile.TemporaryDirectory(prefix="zl-chromium-") as scratch:
        options = webdriver.ChromeOptions()
        options.binary_location = str(chromium)
        for flag in HEADLESS_FLAGS + OFFLINE_FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        service = Service(str(chromedriver), env=os.environ | {"TMPDIR": scratch})
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(timeout_s)
            yield driver
        finally:
            driver.quit()


def check_report(report_html: Path, screenshot: Path, timeout_s: float = 60) -> PageCheck:
    """Loads report_html from its directory (file://, so relative plot paths resolve), then every
    other page beside or below it (per-run pages), and screenshots the main page."""
    report_html = Path(report_html).resolve()
    if not report_html.is_file():
        raise FileNotFoundError(f"{report_html}: no such report page")
    others = sorted(p for p in report_html.parent.rglob("*.html") if p != report_html)
    check = PageCheck(page=report_html, screenshot=Path(screenshot))
    with headless_chromium(timeout_s) as driver:
        for page in [report_html, *others]:
            for log in ("performance", "browser"):   # what came before is not this page's
                driver.get_log(log)
            driver.get(page.as_uri())
            if page == report_html:
                png = driver.get_screenshot_as_png()
            collect_problems(driver, page, check)
            check.pages_loaded.append(page)
    check.screenshot.parent.mkdir(parents=True, exist_ok=True)
    check.screenshot.write_bytes(png)
    check.distinct_colours, check.ink_share = colour_figures(check.screenshot)
    return check


def collect_problems(driver, page: Path, check: PageCheck) -> None:
    """Console errors (uncaught exceptions, console.error, a resource that failed) and failed
    requests (the performance log's Network.loadingFailed, and HTTP error statuses) since the
    last call, each prefixed with its page when it is not the main one."""
    where = "" if page == check.page else f"{page.relative_to(check.page.parent)}: "
    failed_urls = set()
    urls: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            url = urls.get(params["requestId"], f"request {params['requestId']}")
            failed_urls.add(url)
            check.failed_loads.append(f"{where}{url}: {params['errorText']}")
        elif message["method"] == "Network.responseReceived" and params["response"].get("status", 0) >= 400:
            url = params["response"]["url"]
            failed_urls.add(url)
            check.failed_loads.append(f"{where}{url}: HTTP {params['response']['status']}")
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        # A failed resource is also logged to the console; it is already a failed load.
        if entry.get("source") == "network" and any(entry["message"].startswith(u) for u in failed_urls):
            continue
        check.console_errors.append(f"{where}{entry['message']}")


def colour_figures(png: Path) -> tuple[int, float]:
    """Distinct colours of the image, and the share of its pixels not in its most common colour."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height)
    background = max(count for count, _ in colours)
    total = rgb.width * rgb.height
    return len(colours), 1 - background / total
