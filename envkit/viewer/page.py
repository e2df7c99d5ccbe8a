"""The viewer as one self-contained HTML page: CSS, JS, SVG curves and data all inline.

The data sits in ``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as
JSON escapes (``embed_json``), so no text of a trajectory can close the script element; the page
builds its DOM with ``textContent`` only, and a Content-Security-Policy allows no network access
and runs only the page's own script (by its SHA-256), so even markup that got through would not
execute.

Example:
    >>> embed_json({"text": "</script><script>alert(1)</script>"})
    '{"text":"\\\\u003c/script\\\\u003e\\\\u003cscript\\\\u003ealert(1)\\\\u003c/script\\\\u003e"}'
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from envkit.viewer.curves import run_charts
from envkit.viewer.data import ViewData

__all__ = ["embed_json", "render_html", "write_html"]


def _finite(value: Any) -> Any:
    """``value`` with every NaN/infinity replaced by ``None`` (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def embed_json(value: Any) -> str:
    """JSON text that is safe inside a ``<script>`` element of an HTML page.

    ASCII only (lone surrogates survive as escapes), no ``NaN``, and ``<``, ``>``, ``&`` escaped
    as ``\\u003c``, ``\\u003e``, ``\\u0026`` (valid JSON, and no ``</script`` or ``<!--`` can
    appear).
    """
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN or infinity somewhere: they become null
        text = json.dumps(_finite(value), ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _asset(name: str) -> str:
    text = resources.files("envkit.viewer").joinpath("assets", name).read_text(encoding="utf-8")
    if "</" in text and name.endswith(".js"):
        raise RuntimeError(f"envkit/viewer/assets/{name} must not contain '</'")
    return text


_CONTROLS = """
<div id="controls">
  <label>outcome <select id="f-outcome"></select></label>
  <label>env <select id="f-env"></select></label>
  <label id="f-step-box">step <select id="f-step"></select></label>
  <label>reward &ge; <input id="f-rmin" type="number" step="any"></label>
  <label>&le; <input id="f-rmax" type="number" step="any"></label>
  <label>only <select id="f-flag">
    <option value="">all</option>
    <option value="hacking">judge flagged reward hacking</option>
    <option value="reward_errors">reward unknown or errors</option>
    <option value="zero_variance">zero-variance groups</option>
    <option value="cut">cut by max tokens</option>
    <option value="tool_calls">with tool calls</option>
  </select></label>
  <label>search <input id="f-q" type="search" placeholder="text in messages, tools, errors"></label>
  <label>sort <select id="f-sort">
    <option value="order">file order</option>
    <option value="reward-desc">reward, high first</option>
    <option value="reward-asc">reward, low first</option>
    <option value="step-asc">step, first</option>
    <option value="step-desc">step, last first</option>
    <option value="std-desc">group reward std, high first</option>
    <option value="env">env</option>
    <option value="outcome">outcome</option>
    <option value="turns-desc">turns, most first</option>
  </select></label>
  <button id="f-reset" type="button">reset</button>
  <span id="count"></span>
</div>
<div id="layout">
  <div id="list">
    <div class="list-head"><span class="h-step">step</span><span>env</span><span>task</span>
      <span>#</span><span>reward</span><span>outcome</span><span>turns</span>
      <span>last assistant turn</span></div>
    <div id="rows"><div id="rows-spacer"></div></div>
    <div id="empty" hidden>No trajectory matches the filters.</div>
  </div>
  <div id="detail"></div>
</div>
"""


def render_html(view: ViewData) -> str:
    """The whole page for ``view`` as one HTML string (no external resource of any kind)."""
    js = _asset("viewer.js")
    css = _asset("viewer.css")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    charts = "".join(c.svg for c in run_charts(view.metrics))
    name = Path(view.source).name or view.source
    data = embed_json(view.model_dump(exclude={"metrics"}))
    curves = (
        '<details id="curves-box" open><summary>curves of the run</summary>'
        f'<div id="curves">{charts}</div></details>'
        if charts
        else '<div id="curves"></div>'
    )
    e = html.escape
    return "".join(
        [
            "<!doctype html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>envkit view · {e(name)}</title>",
            '<link rel="icon" href="data:,">',
            f"<style>{css}</style></head>\n<body>",
            f'<h1>envkit view <span class="source">{e(view.source)}</span></h1>',
            '<div id="summary"></div><div id="warnings"></div>',
            curves,
            _CONTROLS,
            f'<script type="application/json" id="envkit-data">{data}</script>\n',
            f"<script>{js}</script>\n",
            "</body></html>\n",
        ]
    )


def write_html(view: ViewData, out: str | Path) -> Path:
    """Writes ``render_html(view)`` to ``out`` (parents created) and returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(view), encoding="utf-8")
    return path
