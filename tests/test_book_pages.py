"""The built book in headless Chromium: every page loads, shows its figures, has no errors."""

import shutil
import tempfile

import pytest
import yaml

from spaceevo_lib.settings import project_root

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic"]


def toc_pages():
    toc = yaml.safe_load((project_root() / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: `make browser` (or `apt-get install chromium`) "
                    "installs Debian's headless Chromium")
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS)
        # the book is local; block what the pages would fetch from the internet (MathJax CDN)
        ctx.route("http*://**", lambda route: route.abort())
        yield ctx
        ctx.close()


@pytest.mark.parametrize("page_name", toc_pages())
def test_page_loads_with_figures_and_no_errors(smoke_book, browser, page_name):
    html = smoke_book / "_build" / "html" / f"{page_name}.html"
    assert html.is_file(), f"{page_name} is in _toc.yml but was not built"
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html.as_uri(), wait_until="load")
    assert page.locator("h1").count() >= 1
    images = page.locator("article img")
    broken = page.evaluate(
        "() => [...document.querySelectorAll('article img')]"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert broken == [], f"images that did not load: {broken}"
    if page_name != toc_pages()[0]:
        assert images.count() >= 1, "a chapter page without figures"
    text = page.inner_text("article")
    for marker in ("Traceback (most recent call last)", "Error in cell"):
        assert marker not in text
    assert page.locator(".output.error, .output.traceback, .output.stderr").count() == 0
    # sphinx-thebe (pulled in by Jupyter Book 1.0.4) declares THEBE_JS_URL twice on every page;
    # that live-code launcher is unused here, so only that known theme error is tolerated.
    assert not [e for e in errors if "THEBE_JS_URL" not in e], errors
    page.close()


#: Text a table cell must never show: a missing value printed as Python/pandas spell it.
MISSING_SPELLINGS = ("nan", "NaN", "None", "<NA>")

#: Measures one page in the browser: tables that run past the article's content box without a
#: sideways-scrolling container, code-cell lines that are clipped or run past its right edge,
#: and table cells that print a missing value. Boxes are compared with a 1 px tolerance.
READABILITY_JS = """(missing) => {
  const article = document.querySelector('article.bd-article') || document.querySelector('article');
  if (!article) return {error: 'no article'};
  const cs = getComputedStyle(article), ab = article.getBoundingClientRect();
  const box = {left: ab.left + parseFloat(cs.paddingLeft) - 1,
               right: ab.right - parseFloat(cs.paddingRight) + 1};
  const inside = (r) => r.left >= box.left && r.right <= box.right;
  const scrollsX = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const name = (el) => (el.id ? '#' + el.id : '') + ' ' +
      (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
  const cut = [], clipped = [], missing_cells = [];
  for (const t of article.querySelectorAll('table')) {
    const r = t.getBoundingClientRect();
    if (r.width === 0) continue;  // not rendered (e.g. inside a closed dropdown)
    if (inside(r)) continue;
    let el = t.parentElement, ok = false;
    for (; el && el !== article.parentElement; el = el.parentElement) {
      if (scrollsX(el) && el.scrollWidth > el.clientWidth) {
        // the scroller sits inside the column and its scroll range reaches every column
        ok = inside(el.getBoundingClientRect()) && el.scrollWidth + 1 >= t.offsetWidth;
        break;
      }
    }
    if (!ok) cut.push(`${name(t)} [table ${Math.round(r.left)}..${Math.round(r.right)} px, ` +
                      `column ${Math.round(box.left)}..${Math.round(box.right)} px]`);
  }
  for (const pre of article.querySelectorAll('div.cell_input pre')) {
    const r = pre.getBoundingClientRect();
    if (r.width === 0) continue;
    const ws = getComputedStyle(pre).whiteSpace;
    const wraps = !['pre', 'nowrap'].includes(ws);
    const overflowing = pre.scrollWidth > pre.clientWidth + 1;
    const problems = [];
    if (!wraps && !scrollsX(pre)) problems.push(`white-space ${ws} and no sideways scroll`);
    if (overflowing && !scrollsX(pre)) problems.push('lines clipped or spilling out');
    if (r.right > box.right) problems.push(`right edge ${Math.round(r.right)} px past the ` +
                                           `column's ${Math.round(box.right)} px`);
    if (problems.length) clipped.push(`${name(pre)} [${problems.join('; ')}]`);
  }
  for (const cell of article.querySelectorAll('table td, table th')) {
    const text = (cell.innerText || cell.textContent || '').trim();
    if (missing.includes(text)) missing_cells.push(`${text} in ${name(cell.closest('table'))}`);
  }
  return {cut, clipped, missing_cells};
}"""


@pytest.mark.parametrize("page_name", toc_pages())
def test_page_is_readable_at_1280px(smoke_book, browser, page_name):
    """At 1280x900: every table fits the text column or scrolls sideways inside it, code
    lines wrap or scroll without running past the column, and no cell prints a missing value
    as nan / None / <NA>."""
    html = smoke_book / "_build" / "html" / f"{page_name}.html"
    assert html.is_file(), f"{page_name} is in _toc.yml but was not built"
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(html.as_uri(), wait_until="load")
        found = page.evaluate(READABILITY_JS, list(MISSING_SPELLINGS))
    finally:
        page.close()
    assert "error" not in found, found
    assert found["cut"] == [], f"tables cut at the column's edge: {found['cut']}"
    assert found["clipped"] == [], f"code cells whose lines are clipped: {found['clipped']}"
    assert found["missing_cells"] == [], (
        f"table cells showing a missing value as text: {found['missing_cells']}")
