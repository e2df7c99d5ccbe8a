"""The page in a real headless Chromium: it loads clean, shows, filters, groups, and stays inert.

Needs the Debian package ``chromium`` (``scripts/setup.sh`` installs it); without it these tests
fail with the message that says how to install it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from envkit.viewer import write_view
from envkit.viewer.browser import BrowserError, HeadlessChromium

pytestmark = pytest.mark.browser

HANG_GUARD_S = 180.0
"""Only a guard against a hung page: a 10k-trajectory page loads in about a second."""

READY = "window.envkitViewer && window.envkitViewer.ready"


@pytest.fixture(scope="module")
def browser() -> Iterator[HeadlessChromium]:
    with HeadlessChromium(width=1400, height=900, timeout=HANG_GUARD_S) as b:
        yield b


@pytest.fixture(scope="module")
def sample_page(sample_jsonl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_view(sample_jsonl, tmp_path_factory.mktemp("pages") / "sample.html")


def load(browser: HeadlessChromium, page: Path) -> None:
    browser.events.clear()
    browser.open(page)
    browser.wait_for(READY)


def shown(browser: HeadlessChromium) -> str:
    return browser.evaluate("document.getElementById('count').textContent")


def rows(browser: HeadlessChromium) -> list[dict[str, str]]:
    """The list rows in the DOM, each cell's text by its class."""
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#rows .row')).map(r => Object.fromEntries("
        "Array.from(r.children).map(c => [c.className.split(' ')[0], c.textContent])))"
    )


def set_control(browser: HeadlessChromium, element_id: str, value: str, event: str) -> None:
    browser.evaluate(
        f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); "
        f"e.value = {json.dumps(value)}; e.dispatchEvent(new Event({json.dumps(event)})); }})()"
    )


def test_the_page_loads_without_console_errors_and_shows_the_trajectories(
    browser: HeadlessChromium, sample_page: Path, tmp_path: Path
) -> None:
    load(browser, sample_page)
    assert browser.console_errors == []
    assert shown(browser) == "18 of 18 trajectories shown"
    listed = rows(browser)
    assert len(listed) == 18
    assert {r["c-env"] for r in listed} == {"SayWordEnv"}
    assert {r["c-outcome"] for r in listed} == {"ok", "truncated", "policy_error"}
    detail = browser.evaluate("document.getElementById('detail').innerText")
    assert "judge: 0.9" in detail and "because T" in detail
    assert "→ spell" in detail and "USER" in detail  # a tool call, and the conversation
    summary = browser.evaluate("document.getElementById('summary').innerText")
    assert "trajectories: 18" in summary and "outcome policy_error: 2" in summary
    png = browser.screenshot()
    (tmp_path / "page.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1400, 900)
    listing = Image.open(io.BytesIO(browser.screenshot("#list"))).convert("RGB")
    raw = listing.tobytes()
    pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
    inked = sum(1 for p in pixels if sum(p) < 600) / len(pixels)
    assert inked > 0.01, f"the list looks blank ({inked:.2%} dark pixels)"
    assert len(set(pixels)) > 20


def test_filtering_and_sorting_change_what_is_shown(
    browser: HeadlessChromium, sample_page: Path
) -> None:
    load(browser, sample_page)
    assert len(rows(browser)) == 18
    set_control(browser, "f-outcome", "policy_error", "change")
    assert shown(browser) == "2 of 18 trajectories shown"
    assert [r["c-outcome"] for r in rows(browser)] == ["policy_error"] * 2
    set_control(browser, "f-outcome", "@failed", "change")
    assert len(rows(browser)) == 2
    set_control(browser, "f-outcome", "", "change")
    set_control(browser, "f-rmin", "0.95", "input")
    assert {r["c-reward"] for r in rows(browser)} == {"1"}
    assert len(rows(browser)) == 7
    set_control(browser, "f-rmin", "", "input")
    set_control(browser, "f-flag", "hacking", "change")
    assert shown(browser) == "1 of 18 trajectories shown"
    set_control(browser, "f-flag", "tool_calls", "change")
    assert {r["c-preview"] for r in rows(browser)} != set()
    with_tools = len(rows(browser))
    assert 0 < with_tools < 18
    set_control(browser, "f-flag", "", "change")
    set_control(browser, "f-q", "connection refused", "input")
    browser.wait_for("document.getElementById('count').textContent.startsWith('2 of')")
    set_control(browser, "f-q", "", "input")
    browser.wait_for("document.getElementById('count').textContent.startsWith('18 of')")
    set_control(browser, "f-sort", "reward-asc", "change")
    rewards = [r["c-reward"] for r in rows(browser)]
    known = [float(r) for r in rewards if r != "–"]
    assert known == sorted(known) and rewards[-2:] == ["–", "–"]  # unknown rewards last
    assert browser.console_errors == []


def test_a_click_shows_the_group_side_by_side(browser: HeadlessChromium, sample_page: Path) -> None:
    load(browser, sample_page)
    browser.evaluate("document.querySelectorAll('#rows .row')[4].click()")
    cards = browser.evaluate(
        "Array.from(document.querySelectorAll('#detail .card')).map(c => "
        "[c.querySelector('.member').textContent, c.classList.contains('selected'), "
        "c.getBoundingClientRect().top])"
    )
    assert [c[0] for c in cards] == ["#0", "#1", "#2"]
    assert [c[1] for c in cards] == [False, True, False]  # row 4 is member 1 of group 1
    assert len({round(c[2]) for c in cards}) == 1  # side by side: the same top
    head = browser.evaluate("document.querySelector('#detail .group-head').innerText")
    assert "group of 3" in head and "mean 0.6667" in head
    browser.evaluate("document.getElementById('toggle-group').click()")
    assert browser.evaluate("document.querySelectorAll('#detail .card').length") == 1
    assert browser.console_errors == []


def test_model_text_with_markup_shows_as_text_and_never_runs(
    browser: HeadlessChromium, sample_page: Path, hostile: str
) -> None:
    load(browser, sample_page)
    set_control(browser, "f-q", "window.__pwned", "input")
    browser.wait_for("document.getElementById('count').textContent.startsWith('1 of')")
    detail = browser.evaluate("document.getElementById('detail').textContent")
    assert hostile in detail
    preview = rows(browser)[0]["c-preview"]
    assert preview.startswith("</script><script>window.__pwned")
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.getElementById('injected')") is None
    assert browser.evaluate("document.querySelectorAll('img, #detail b, #rows b').length") == 0
    assert browser.evaluate("document.scripts.length") == 2
    assert browser.dialogs == []
    assert browser.console_errors == []


def test_ten_thousand_trajectories_load_and_stay_virtualised(
    browser: HeadlessChromium, big_jsonl: Path, tmp_path: Path
) -> None:
    page = write_view(big_jsonl, tmp_path / "big.html")
    load(browser, page)
    assert shown(browser) == "10000 of 10000 trajectories shown"
    in_dom = len(rows(browser))
    assert 10 < in_dom < 100  # only what is on screen (and a margin) is in the DOM
    browser.evaluate(
        "(() => { const r = document.getElementById('rows'); "
        "r.scrollTop = r.scrollHeight; r.dispatchEvent(new Event('scroll')); })()"
    )
    browser.wait_for(
        "Array.from(document.querySelectorAll('#rows .row')).some(r => r.dataset.id === '9999')"
    )
    assert len(rows(browser)) < 100
    set_control(browser, "f-outcome", "policy_error", "change")
    n = int(shown(browser).split()[0])
    assert 0 < n < 10_000
    assert {r["c-outcome"] for r in rows(browser)} == {"policy_error"}
    assert browser.console_errors == []


@pytest.mark.slow
def test_a_training_run_shows_its_curves_and_a_click_on_a_point_shows_that_step(
    browser: HeadlessChromium, tmp_path: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = tmp_path / "run"
    train = [
        sys.executable, "-m", "envkit.cli", "train", "Arithmetic-v0", "--model", "tiny-random",
        "--steps", "2", "--group-size", "2", "--groups-per-step", "2", "--max-new-tokens", "8",
        "-k", "max_turns=1", "--out", str(run),
    ]  # fmt: skip
    done = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    view = [sys.executable, "-m", "envkit.cli", "view", str(run)]
    done = subprocess.run(view, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    load(browser, run / "view.html")
    assert browser.console_errors == []
    titles = browser.evaluate(
        "Array.from(document.querySelectorAll('#curves svg .chart-title')).map(t => t.textContent)"
    )
    assert titles[:3] == ["reward", "token entropy", "in-group diversity and signal"]
    assert shown(browser) == "8 of 8 trajectories shown"
    assert {r["c-step"] for r in rows(browser)} == {"1", "2"}
    browser.evaluate(
        "document.querySelector('#curves svg circle[data-step=\"2\"]')"
        ".dispatchEvent(new MouseEvent('click'))"
    )
    assert shown(browser) == "4 of 8 trajectories shown"
    assert {r["c-step"] for r in rows(browser)} == {"2"}


def test_a_missing_or_broken_browser_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrowserError, match="not an executable file: install chromium"):
        HeadlessChromium(str(tmp_path / "no-such-chromium"))
    profiles = Path(tempfile.gettempdir())
    before = set(profiles.glob("envkit-chromium-*"))
    with pytest.raises(BrowserError, match=r"exited with code 1 at start"):
        HeadlessChromium("/bin/false", timeout=30).start()
    assert set(profiles.glob("envkit-chromium-*")) == before  # its profile was removed
