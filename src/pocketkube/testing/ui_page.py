"""Reading the live map page from Python tests (tests/integration/test_ui_page.py against the fake
server, tests/e2e/test_ui_browser.py against real clusters): the numbers come from the map's
data-* attributes and the endpoint table, the hooks of docs/ui-page.md.

Predicates for `wait_for_function` are written as functions: Playwright evals an expression string
in the page, which the page's CSP (no 'unsafe-eval') rightly refuses.
"""

from __future__ import annotations

POD = "[data-testid=pod]"
ROW = "[data-testid=endpoint-table] tbody tr[data-pod]"


def pods(page) -> dict[str, dict]:
    """The map's pod boxes by pod name: their data-* attributes."""
    return {p["pod"]: p for p in page.eval_on_selector_all(POD, "els => els.map(e => ({...e.dataset}))")}


def rows(page) -> dict[str, dict]:
    """The endpoint table's rows by pod name: data-* attributes plus `cells` (their texts)."""
    return {r["pod"]: r for r in page.eval_on_selector_all(
        ROW, "els => els.map(e => ({...e.dataset, cells: [...e.cells].map(c => c.textContent)}))")}


def entries(page) -> dict[str, dict]:
    """The map's entry boxes by entry id."""
    return {e["entryId"]: e for e in page.eval_on_selector_all(
        "[data-testid=entry]", "els => els.map(e => ({...e.dataset, text: e.textContent}))")}


def total(page, selector: str) -> int:
    """Σ data-conn-total over `selector`."""
    return page.eval_on_selector_all(selector, "els => els.reduce((a, e) => a + +e.dataset.connTotal, 0)")


def wait_total(page, selector: str, n: int, timeout: float = 5000) -> None:
    """Until Σ data-conn-total over `selector` is exactly `n`."""
    page.wait_for_function(
        "([sel, n]) => [...document.querySelectorAll(sel)].reduce((a, e) => a + +e.dataset.connTotal, 0) === n",
        arg=[selector, n], timeout=timeout)


def wait_count(page, selector: str, n: int, timeout: float = 5000) -> None:
    """Until exactly `n` elements match `selector`."""
    page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length === n", arg=[selector, n],
                           timeout=timeout)
