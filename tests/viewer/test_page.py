"""The page is one self-contained HTML file whose embedded data no model text can break out of."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from pathlib import Path

from envkit.types import Trajectory, TrajectoryGroup
from envkit.viewer import ViewData, embed_json, load_view, render_html
from envkit.viewer.curves import line_chart, run_charts


def _data_of(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="envkit-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_hostile_text_cannot_close_the_data_script_and_round_trips(
    sample_jsonl: Path, hostile: str
) -> None:
    page = render_html(load_view(sample_jsonl))
    # the page's two script elements are the only ones: the payload's tags are escaped
    assert page.count("<script") == 2 and page.count("</script") == 2
    assert "<!--" not in page and "<b id=" not in page and "<img" not in page
    data = _data_of(page)
    texts = [m["content"] for t in data["trajectories"] for m in t["messages"]]
    assert hostile in texts  # the page gets the exact text back, to show as text


def test_embed_json_escapes_markup_and_turns_nan_into_null() -> None:
    value = {"a": "</script><!--&", "n": math.nan, "inf": [math.inf], "s": "\ud800 é \u2028"}
    text = embed_json(value)
    assert not set("<>&") & set(text)
    assert text.isascii()
    back = json.loads(text)
    assert back == {"a": "</script><!--&", "n": None, "inf": [None], "s": "\ud800 é \u2028"}


def test_the_page_loads_nothing_from_anywhere_and_runs_only_its_own_script(
    sample_jsonl: Path,
) -> None:
    page = render_html(load_view(sample_jsonl))
    data = re.search(r'<script type="application/json" id="envkit-data">.*?</script>', page, re.S)
    page = page.replace(data.group(0), "")  # the data (text, never markup) holds src=x
    assert not re.search(r"\bsrc\s*=", page)
    assert "@import" not in page and "url(" not in page
    assert re.findall(r"<link[^>]*>", page) == ['<link rel="icon" href="data:,">']
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)  # only the SVG namespace
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert "default-src 'none'" in csp
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_non_finite_values_in_metrics_do_not_break_the_data() -> None:
    traj = Trajectory(env_id="e", reward=1.0, reward_breakdown={"x": math.nan})
    view = ViewData(
        source="s.jsonl",
        kind="jsonl",
        groups=[{"id": 0, "members": [0], "metrics": {"judge_cost_usd": math.inf}}],
        trajectories=[{"id": 0, "breakdown": traj.reward_breakdown}],
    )
    data = _data_of(render_html(view))
    assert data["trajectories"][0]["breakdown"] == {"x": None}
    assert data["groups"][0]["metrics"]["judge_cost_usd"] is None


def test_run_charts_draw_reward_entropy_diversity_and_per_env_reward() -> None:
    rows = [
        {
            "kind": "train",
            "step": s,
            "reward/mean": s / 10,
            "entropy/sampled_nll": 2.0 - s / 10,
            "diversity/pairwise_similarity": 0.1 * s,
            "groups/zero_variance_frac": 0.5,
            "env/<b>Evil-v0</b>/reward/mean": 0.3,
            "completion/tokens_mean": 40 + s,
        }
        for s in range(1, 6)
    ] + [{"kind": "eval", "step": 5, "eval/reward_mean": 0.7, "eval/episodes": 8}]
    charts = {c.title: c for c in run_charts(rows)}
    assert list(charts) == [
        "reward",
        "token entropy",
        "in-group diversity and signal",
        "completion tokens per episode",
    ]
    assert charts["reward"].keys == (
        "reward/mean",
        "eval/reward_mean",
        "env/<b>Evil-v0</b>/reward/mean",
    )
    svg = charts["reward"].svg
    assert "<b>" not in svg and "env/&lt;b&gt;Evil-v0&lt;/b&gt;/reward/mean" in svg
    assert svg.count('data-step="5"') == 3 and "eval/reward_mean @ step 5: 0.7" in svg


def test_a_chart_without_data_says_so_and_a_run_without_metrics_has_no_charts() -> None:
    assert "no data" in line_chart("empty", [])
    assert run_charts([]) == []
    assert run_charts([{"kind": "train", "step": 1, "loss": math.nan}]) == []


def test_a_group_without_trajectories_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text(
        TrajectoryGroup(env_id="e", trajectories=[Trajectory(env_id="e")]).model_dump_json()
        + "\n"
        + TrajectoryGroup(env_id="e").model_dump_json()
        + "\n"
    )
    data = _data_of(render_html(load_view(path)))
    assert [len(g["members"]) for g in data["groups"]] == [1, 0]
