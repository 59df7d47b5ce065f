"""The docs site (mkdocs.yml, docs/gen_lessons.py): it builds with warnings as errors, every scenario has its
lesson page, every internal link resolves, and in Chromium every page loads with its images and plots drawn and
the search finds a scenario by a word of its story. Screenshots of the landing page, a lesson and a run report's
index at 1280 px go to this run's report folder (CI's artefacts)."""

from __future__ import annotations

import functools
import html.parser
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from http_server import serve

from harness import browser
from harness.lessons import lessons
from harness.report import write_page

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.xdist_group("site"),  # one build for the module's tests
    pytest.mark.skipif(sys.version_info < (3, 11), reason="the docs site's tools need Python 3.11+ (Material 9.8)"),
]
LESSON = "lessons/broker_restart/broker_restart_drops_transient_messages.html"


BUILD_LOG = pytest.StashKey[str]()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"},  # as scripts/docs
    )  # fmt: skip
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    pytestconfig.stash[BUILD_LOG] = done.stdout + done.stderr
    return out


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "search" not in p.relative_to(site).parts)


class Links(html.parser.HTMLParser):
    """The ids and the link targets of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(found["id"] or "")
        if tag == "a" and found.get("href"):
            self.hrefs.append(found["href"] or "")


def test_every_scenario_has_its_lesson_page(site: Path) -> None:
    built = {p.relative_to(site).as_posix() for p in pages(site)}
    expected = {lesson.page.removesuffix(".md") + ".html" for lesson in lessons()}
    assert expected and not expected - built, f"lessons without a page: {sorted(expected - built)}"
    assert {"index.html", "getting-started.html", "lessons/index.html", "api.html"} <= built


def test_every_lesson_has_a_recorded_run_and_the_build_names_each_stale_one(
    site: Path, pytestconfig: pytest.Config
) -> None:
    """A new scenario comes with its recorded run; a run recorded before its scenario's code changed is named by
    the build, to be recorded again (``python -m harness.lessons record``)."""
    found = lessons()
    assert [lesson.key for lesson in found if not lesson.runs] == []
    log = pytestconfig.stash[BUILD_LOG]
    assert [nodeid for lesson in found for nodeid in lesson.stale if nodeid not in log] == []


def test_every_internal_link_resolves(site: Path) -> None:
    parsed = {}
    for page in pages(site):
        parser = Links()
        parser.feed(page.read_text())
        parsed[page] = parser
    broken = []
    for page, parser in parsed.items():
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc:
                continue  # the outside world: not this test's to check
            base = site if parts.path.startswith("/") else page.parent  # 404.html links from the site's root
            target = (base / unquote(parts.path).lstrip("/")).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if target.suffix != ".html":
                if not target.exists():
                    broken.append(f"{page.relative_to(site)}: {href} (no such file)")
                continue
            if target not in parsed and not target.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no such page)")
            elif parts.fragment and target in parsed and unquote(parts.fragment) not in parsed[target].ids:
                broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP (Material's search runs in a web worker, which a file:// page cannot start)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    yield from serve(handler)


DRAWN = """() => ({
  images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  plots: [...document.querySelectorAll("figure.plot svg")].map(s => s.getBoundingClientRect().width),
})"""


@pytest.mark.browser
def test_every_page_loads_with_its_images_and_plots_drawn(site: Path, served: str) -> None:
    problems = []
    with browser.browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        for path in pages(site):
            relative = path.relative_to(site).as_posix()
            response = page.goto(f"{served}/{relative}")
            seen = page.evaluate(DRAWN)
            if response is None or not response.ok:
                problems.append(f"{relative}: HTTP {response and response.status}")
            if seen["images"]:
                problems.append(f"{relative}: images not drawn: {seen['images']}")
            if any(width < 600 for width in seen["plots"]):
                problems.append(f"{relative}: a plot narrower than 600 px: {seen['plots']}")
            if errors:
                problems.append(f"{relative}: script errors: {errors}")
                errors.clear()
    assert not problems, "\n".join(problems)


@pytest.mark.browser
def test_the_search_finds_a_scenario_by_a_word_of_its_story(served: str) -> None:
    """ "transient" is in the story of the broker restart that drops transient messages."""
    with browser.browser_page() as page:
        page.goto(f"{served}/index.html")
        page.fill("input.md-search__input", "transient")
        page.wait_for_selector(".md-search-result__item", timeout=20_000)
        found = page.eval_on_selector_all(".md-search-result__item a", "links => links.map(a => a.href)")
    assert any(LESSON in link for link in found), found


@pytest.mark.browser
def test_screenshots_of_the_landing_page_a_lesson_and_a_report_index(
    served: str, tmp_path: Path, screenshots: Path
) -> None:
    """What a reader sees at 1280 px: the landing page (its plot), a lesson (its story, code and recorded run),
    and the run report's index (drawn from the recorded runs: no broker needed)."""
    report = tmp_path / "report"
    (report / "data").mkdir(parents=True)
    for run in sorted((ROOT / "docs/runs").glob("*.json")):
        (report / "data" / run.name).write_text(run.read_text())
    assert write_page(report, "recorded runs")
    with browser.browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        for name, url in (("site-landing", f"{served}/index.html"), ("site-lesson", f"{served}/{LESSON}"),
                          ("report-index", (report / "index.html").as_uri())):  # fmt: skip
            page.goto(url)
            page.screenshot(path=str(screenshots / f"{name}.png"))
        landing_plot = page.goto(f"{served}/assets/worker-outage.svg")
        assert landing_plot is not None and landing_plot.ok
    assert {"site-landing.png", "site-lesson.png", "report-index.png"} <= {p.name for p in screenshots.glob("*.png")}
