"""Tool-use templates over generated log files."""

from __future__ import annotations

from collections import Counter

import numpy as np

from envkit.environments.tool_tasks._model import ToolTask, pick, template

LEVELS = ["DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR"]
MESSAGES = ["cache miss", "request done", "retrying", "disk slow", "user login", "job queued"]
PATHS = ["/", "/login", "/api/items", "/api/users", "/static/app.js", "/health", "/search"]


def _app_log(rng: np.random.Generator) -> tuple[list[tuple[str, str]], str]:
    n = int(rng.integers(60, 150))
    entries = [(pick(rng, LEVELS), pick(rng, MESSAGES)) for _ in range(n)]
    lines = [
        f"2024-05-{1 + i // 40:02d}T{(i * 7) % 24:02d}:{(i * 13) % 60:02d}:00 {lvl} {msg}"
        for i, (lvl, msg) in enumerate(entries)
    ]
    return entries, "\n".join(lines) + "\n"


@template
def log_level_count(rng: np.random.Generator) -> ToolTask:
    entries, text = _app_log(rng)
    level = pick(rng, ["ERROR", "WARNING", "DEBUG"])
    return ToolTask(
        "log_level_count",
        f"How many lines of logs/app.log have the level {level}? Answer with the number.",
        {"logs/app.log": text},
        sum(1 for lvl, _ in entries if lvl == level),
        "int",
    )


def _access_log(rng: np.random.Generator) -> tuple[list[tuple[str, str, int]], str]:
    # Documentation address ranges (RFC 5737): these are text in a file, never contacted.
    ips = [f"203.0.113.{int(rng.integers(1, 60))}" for _ in range(int(rng.integers(8, 25)))]
    rows = [
        (pick(rng, ips), pick(rng, PATHS), pick(rng, [200, 200, 200, 404, 500, 301]))
        for _ in range(int(rng.integers(80, 200)))
    ]
    lines = [f'{ip} - - "GET {path} HTTP/1.1" {code} {len(path) * 37}' for ip, path, code in rows]
    return rows, "\n".join(lines) + "\n"


@template
def log_unique_clients(rng: np.random.Generator) -> ToolTask:
    rows, text = _access_log(rng)
    return ToolTask(
        "log_unique_clients",
        "logs/access.log is a web server log; the first field of a line is the client IP "
        "address. How many distinct client IPs made requests? Answer with the number.",
        {"logs/access.log": text},
        len({ip for ip, _, _ in rows}),
        "int",
    )


@template
def log_top_path(rng: np.random.Generator) -> ToolTask:
    rows, text = _access_log(rng)
    counts = Counter(path for _, path, _ in rows)
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return ToolTask(
        "log_top_path",
        "Which path was requested most often in logs/access.log? If several tie, give the "
        "alphabetically first. Answer with the path.",
        {"logs/access.log": text},
        best,
        "str",
    )


@template
def log_error_rate(rng: np.random.Generator) -> ToolTask:
    rows, text = _access_log(rng)
    errors = sum(1 for _, _, code in rows if code >= 500)
    return ToolTask(
        "log_error_rate",
        "What percentage of the requests in logs/access.log got a 5xx status code? Round to 2 "
        "decimals (e.g. 12.5 for 12.5%).",
        {"logs/access.log": text},
        round(100 * errors / len(rows), 2),
        "float",
    )
