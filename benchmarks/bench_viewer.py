"""Viewer benchmark: how long ``envkit view`` takes to write a page and Chromium to load it.

Run: ``python benchmarks/bench_viewer.py`` (about 30 s; needs the Debian package ``chromium``,
which ``scripts/setup.sh`` installs). For 1,000 and 10,000 trajectories (groups of 8, multi-turn
tool-use conversations of about 3 KB each, written as ``envkit eval --out`` writes them), side by
side with their ratio:

1. ``load_view`` (parse and validate the JSONL) and ``render_html`` + write, in Python;
2. the page's size;
3. in a headless Chromium: from navigation to the page's first render (``readyMs``, the page's
   own clock) and to the load event (wall clock); goal: 10k ready in < 3 s;
4. responsiveness on the loaded page, measured in the page: applying a filter (outcome), a sort
   (reward), a text search over every message, scrolling to the end, and opening a group;
   goal: every one < 200 ms at 10k (virtualised list: only the rows on screen are in the DOM).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from envkit.viewer import load_view, write_html
from envkit.viewer.browser import HeadlessChromium

OUTCOMES = ["ok"] * 8 + ["truncated", "policy_error"]
WORDS = ["the", "a", "file", "row", "column", "value", "log", "error", "count", "sum", "mean"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_jsonl(path: Path, n: int, seed: int = 0) -> None:
    """``n`` trajectories of a tool env in groups of 8, about 3 KB each."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for gid in range(n // 8):
            members = []
            for j in range(8):
                outcome = rng.choice(OUTCOMES)
                call = {"name": "run_shell", "arguments": json.dumps({"command": "wc -l data.csv"})}
                messages = [
                    {"role": "system", "content": _text(rng, 60)},
                    {"role": "user", "content": _text(rng, 80)},
                    {
                        "role": "assistant",
                        "content": _text(rng, 40),
                        "tool_calls": [{"id": f"c{j}", "type": "function", "function": call}],
                    },
                    {
                        "role": "tool",
                        "tool_call_id": f"c{j}",
                        "name": "run_shell",
                        "content": "exit code 0\n" + _text(rng, 120),
                    },
                    {"role": "assistant", "content": _text(rng, 50)},
                ]
                members.append(
                    {
                        "env_id": "envkit/PythonTools-v0",
                        "seed": gid,
                        "task_id": f"task-{gid}",
                        "group_index": j,
                        "messages": messages,
                        "reward": None if outcome == "policy_error" else rng.random(),
                        "reward_breakdown": {"judge": rng.random()},
                        "metrics": {"judge_explanation": _text(rng, 30), "tool_calls": 1},
                        "outcome": outcome,
                        "error": "ConnectionError: server down" if outcome != "ok" else None,
                    }
                )
            group = {"env_id": "envkit/PythonTools-v0", "seed": gid, "trajectories": members}
            f.write(json.dumps(group) + "\n")


RESPONSIVENESS = {
    "filter (outcome)": (
        "const e = document.getElementById('f-outcome'); e.value = 'truncated'; "
        "e.dispatchEvent(new Event('change'));"
    ),
    "sort (reward)": (
        "const e = document.getElementById('f-sort'); e.value = 'reward-desc'; "
        "e.dispatchEvent(new Event('change'));"
    ),
    "search every message": (
        "const e = document.getElementById('f-q'); e.value = 'nomatchxyz'; "
        "e.dispatchEvent(new Event('input'));"
    ),
    "scroll to the end": (
        "const r = document.getElementById('rows'); r.scrollTop = r.scrollHeight; "
        "r.dispatchEvent(new Event('scroll'));"
    ),
    "open a group": "document.querySelectorAll('#rows .row')[3].click();",
}


def measure(browser: HeadlessChromium, page: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    wall = browser.open(page, timeout=300)
    browser.wait_for("window.envkitViewer && window.envkitViewer.ready", timeout=300)
    out["page ready (in page), ms"] = browser.evaluate("window.envkitViewer.readyMs")
    out["load event (wall), ms"] = wall * 1000
    browser.evaluate("document.getElementById('f-reset').click()")
    for name, action in RESPONSIVENESS.items():
        # time the action plus the layout it causes; a search waits for its 120 ms debounce
        js = (
            "new Promise(done => { const t0 = performance.now(); " + action + " "
            "const settle = () => { document.body.offsetHeight; "
            "requestAnimationFrame(() => done(performance.now() - t0)); }; "
            + ("setTimeout(settle, 125);" if "search" in name else "settle();")
            + " })"
        )
        ms = browser.evaluate(js)
        out[f"{name}, ms"] = ms - (125 if "search" in name else 0)
        browser.evaluate("document.getElementById('f-reset').click()")
    out["rows in the DOM"] = browser.evaluate("document.querySelectorAll('#rows .row').length")
    errors = browser.console_errors
    if errors:
        raise RuntimeError(f"console errors: {errors[:3]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="trajectory counts, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, HeadlessChromium(timeout=300) as browser:
        for n in sizes:
            src = Path(tmp) / f"eval-{n}.jsonl"
            make_jsonl(src, n)
            r: dict[str, float] = {"JSONL size, MB": src.stat().st_size / 1e6}
            t0 = time.perf_counter()
            view = load_view(src)
            r["load_view (Python), s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            page = write_html(view, Path(tmp) / f"eval-{n}.html")
            r["render + write (Python), s"] = time.perf_counter() - t0
            r["page size, MB"] = page.stat().st_size / 1e6
            r.update(measure(browser, page))
            results[n] = r
    keys = list(results[sizes[0]])
    head = f"{'figure':36}" + "".join(f"{n:>12,}" for n in sizes)
    if len(sizes) == 2:
        head += f"{'ratio':>9}"
    print(head)
    for k in keys:
        vals = [results[n][k] for n in sizes]
        line = f"{k:36}" + "".join(f"{v:12.3g}" for v in vals)
        if len(sizes) == 2 and vals[0]:
            line += f"{vals[1] / vals[0]:8.1f}x"
        print(line)
    big = results[sizes[-1]]
    print(
        f"\ngoals at {sizes[-1]:,}: ready < 3000 ms: {big['page ready (in page), ms']:.0f} ms; "
        "every interaction < 200 ms: "
        + ", ".join(
            f"{k.split(',')[0]} {v:.0f}"
            for k, v in big.items()
            if k.endswith(", ms") and not k.startswith(("page", "load"))
        )
    )


if __name__ == "__main__":
    main()
