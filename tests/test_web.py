"""The search page at / in a real headless Chromium (Debian's, driven by Playwright): type a
question, see hits with marked snippets, open a document, follow "more like this", filter.

`make browser` (run by `make test`) installs Debian's chromium when it is missing. Set
SEMSEARCH_SCREENSHOTS=DIR to keep the screenshots (`make screenshots` writes docs/'s).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from processes import REAL_CLI, server

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("SEMSEARCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium: `make browser` installs Debian's package")
        pytest.skip("no chromium: run `make browser` (installs Debian's package)")
    with playwright_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as CI does.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def screenshot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("SEMSEARCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=False)
    assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_open_a_document_and_more_like_this(browser, real_corpus_index, tmp_path):
    with server(REAL_CLI, real_corpus_index) as (url, _process):
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        failures: list[str] = []
        page.on("pageerror", lambda error: failures.append(str(error)))
        page.goto(url)
        page.wait_for_selector("#status:has-text('documents')")

        page.fill("#q", "how many vacation days do employees get")
        page.press("#q", "Enter")
        page.wait_for_selector(".hit")
        first = page.locator(".hit").first
        assert "vacation-policy.md:" in first.locator(".location").inner_text()
        assert first.locator("h3").inner_text() == "Vacation and Leave Policy"
        assert first.locator(".heading").inner_text() == "How Much Vacation You Get"
        marks = [text.lower() for text in first.locator(".snippet mark").all_inner_texts()]
        assert "vacation" in marks and "days" in marks
        assert page.locator(".hit").count() == 10
        screenshot(page, "web-search.png", tmp_path)

        first.locator("a.open").click()
        page.wait_for_selector("#document-view:not([hidden])")
        assert page.locator("#doc-title").inner_text() == "Vacation and Leave Policy"
        assert page.locator("#doc-path").inner_text().endswith("vacation-policy.md")
        current = page.locator(".chunk.current")
        assert current.count() == 1 and current.locator("mark").count() > 0
        assert page.locator(".chunk").count() > 1
        screenshot(page, "web-document.png", tmp_path)

        page.click("#doc-similar")
        page.wait_for_selector("#results-heading:has-text('Documents like')")
        similar = page.locator(".hit .location").all_inner_texts()
        assert similar and not any("vacation-policy.md" in where for where in similar)
        assert any("larkspur-handbook" in where for where in similar[:3])

        page.go_back()  # the fragment keeps the view: back to the document
        page.wait_for_selector("#document-view:not([hidden])")

        page.goto(url + "#/")
        page.fill("#q", "which planet is the hottest")
        page.select_option("#mode", "keyword")
        page.fill("#type", "pdf")
        page.press("#q", "Enter")
        page.wait_for_selector(".hit")
        assert all("solar-system-tour.pdf (page" in where for where in page.locator(".hit .location").all_inner_texts())

        page.fill("#q", "x" * 10)
        page.fill("#path", "*.nothing")
        page.press("#q", "Enter")
        page.wait_for_selector("#message:has-text('No results')")
        assert failures == []
        assert all(address.startswith(url) for address in requested), requested  # nothing from elsewhere
