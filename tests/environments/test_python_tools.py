"""PythonTools-v0: every template is solvable with the tools (by a scripted solver that only reads
the question and the files), answers are checked, tool errors are reported to the model, and
sandbox failures are infra errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import envkit
from envkit.checks import run_checks
from envkit.environments.python_tools import PythonToolsEnv
from envkit.environments.tool_tasks import TEMPLATES
from envkit.policies import CallablePolicy
from envkit.sandbox.pool import SandboxPool
from envkit.types import ToolCall

pytestmark = pytest.mark.docker

_PRELUDE = """
import base64, collections, csv, hashlib, json, os, re, statistics
def walk(root):
    for d, _, files in os.walk(root):
        for f in files:
            yield os.path.join(d, f)
def most(counter):
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
rows = lambda p: list(csv.DictReader(open(p)))
arg = lambda pattern: re.search(pattern, Q).group(1)
"""

# Each solver reads the question Q and the files, and prints the answer (or writes the file).
SOLVERS = {
    "csv_column_mean": "c = arg(r'`(\\w+)` column'); r = rows('data/sales.csv')\n"
    "print(round(sum(float(x[c]) for x in r) / len(r), 2))",
    "csv_column_median": "print(round(statistics.median(float(x['units']) for x in "
    "rows('data/sales.csv')), 2))",
    "csv_filter_count": "g, t = arg(r'region `(\\w+)`'), int(arg(r'more than (\\d+)'))\n"
    "print(sum(1 for x in rows('data/sales.csv') if x['region'] == g and int(x['units']) > t))",
    "csv_top_revenue_product": "c = collections.Counter()\nfor x in rows('data/sales.csv'):\n"
    "    c[x['product']] += int(x['units']) * float(x['price'])\n"
    "print(most(collections.Counter({k: round(v, 2) for k, v in c.items()})))",
    "csv_group_largest": "c = collections.Counter()\nfor x in rows('data/sales.csv'):\n"
    "    c[x['region']] += int(x['units'])\nprint(most(c))",
    "csv_distinct_count": "print(len({x['customer'] for x in rows('data/orders.csv')}))",
    "json_nested_sum": "s = arg(r'status is `(\\w+)`'); o = json.load(open('data/orders.json'))\n"
    "print(sum(l['amount'] for x in o['orders'] if x['status'] == s for l in x['lines']))",
    "json_count_status": "s = arg(r'status `(\\w+)`'); o = json.load(open('data/orders.json'))\n"
    "print(sum(1 for x in o['orders'] if x['status'] == s))",
    "log_level_count": "v = arg(r'level (\\w+)\\?')\n"
    "print(sum(1 for l in open('logs/app.log') if l.split()[1] == v))",
    "log_unique_clients": "print(len({l.split()[0] for l in open('logs/access.log')}))",
    "log_top_path": "print(most(collections.Counter(l.split('\"')[1].split()[1] "
    "for l in open('logs/access.log'))))",
    "log_error_rate": "c = [int(l.split('\"')[2].split()[0]) for l in open('logs/access.log')]\n"
    "print(round(100 * sum(x >= 500 for x in c) / len(c), 2))",
    "tree_count_extension": "e = arg(r'extension (\\.\\w+)')\n"
    "print(sum(1 for p in walk('project') if p.endswith(e)))",
    "tree_find_token": "t = arg(r'(TOKEN-\\d+)')\n"
    "print([p for p in walk('docs') if t in open(p).read()][0])",
    "tree_largest_file": "print(max(walk('data'), key=os.path.getsize))",
    "tree_total_size": "e = arg(r'all the (\\.\\w+) files')\n"
    "print(sum(os.path.getsize(p) for p in walk('logs') if p.endswith(e)))",
    "tree_deepest_dir": "print(max((d for d, _, _ in os.walk('root')), "
    "key=lambda d: d.count('/')))",
    "text_most_common_word": "print(most(collections.Counter(w.strip('.').lower() "
    "for w in open('text/story.txt').read().split())))",
    "text_first_line_of_word": "w = arg(r'word `(\\w+)`')\nprint(next(i + 1 for i, l in "
    "enumerate(open('text/poem.txt')) if w in l.replace('.', ' ').split()))",
    "text_word_count": "print(len(open('text/essay.txt').read().split()))",
    "file_sha256": "print(hashlib.sha256(open('data/blob.bin', 'rb').read()).hexdigest())",
    "base64_secret": "print(base64.b64decode(open('data/secret.b64').read()).decode()"
    ".split('the secret is ')[1])",
    "numbers_kth_smallest": "k = int(arg(r'position (\\d+)'))\n"
    "print(sorted(int(x) for x in open('data/numbers.txt'))[k - 1])",
    "numbers_count_primes": "p = lambda n: n > 1 and all(n % d for d in range(2, "
    "int(n**0.5) + 1))\n"
    "print(sum(p(int(x)) for x in open('data/numbers.txt')))",
    "csv_to_json": "os.makedirs('out', exist_ok=True)\njson.dump([{'name': x['name'], "
    "'age': int(x['age'])} for x in rows('data/people.csv')], open('out/people.json', 'w'))\n"
    "print('done')",
    "reverse_lines": "os.makedirs('out', exist_ok=True)\nl = open('data/lines.txt').read()"
    ".splitlines()\nopen('out/reversed.txt', 'w').write('\\n'.join(reversed(l)) + '\\n')\n"
    "print('done')",
    "sort_unique_words": "os.makedirs('out', exist_ok=True)\nw = sorted(set(open("
    "'data/words.txt').read().split()))\nopen('out/unique.txt', 'w').write('\\n'.join(w))\n"
    "print('done')",
}


def call(name: str, i: int = 0, **args: Any) -> dict[str, Any]:
    tc = ToolCall.create(name, args, id=f"call_{name}_{i}")
    return {"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]}


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(size=2) as p:
        yield p


@pytest.fixture
def env(pool: SandboxPool) -> Iterator[PythonToolsEnv]:
    e = PythonToolsEnv(pool=pool)
    yield e
    e.close()


def test_at_least_twenty_templates_with_solvers() -> None:
    assert len(TEMPLATES) >= 20
    assert set(SOLVERS) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_are_deterministic_by_seed(name: str) -> None:
    a, b = TEMPLATES[name](np.random.default_rng(11)), TEMPLATES[name](np.random.default_rng(11))
    c = TEMPLATES[name](np.random.default_rng(12))
    assert (a.question, a.files, a.answer) == (b.question, b.files, b.answer)
    assert (a.files, a.answer) != (c.files, c.answer)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("seed", [0, 1])
def test_every_template_is_solvable_with_the_tools(
    env: PythonToolsEnv, name: str, seed: int
) -> None:
    obs, info = env.reset(seed=seed, options={"template": name})
    question = obs[-1]["content"]
    code = f"Q = {question!r}\n{_PRELUDE}\n{SOLVERS[name]}"
    obs, reward, terminated, _, info = env.step(call("run_python", code=code))
    output = obs[-1]["content"]
    assert reward == 0.0 and not terminated and output.startswith("exit code 0"), output
    answer = output.split("--- stdout ---\n", 1)[1].strip()
    _, reward, terminated, _, info = env.step(call("submit", 1, answer=answer))
    assert terminated and reward == 1.0, (name, answer, info)


@pytest.mark.parametrize("name", ["csv_column_mean", "tree_find_token", "reverse_lines"])
def test_wrong_answers_score_zero(env: PythonToolsEnv, name: str) -> None:
    env.reset(seed=3, options={"template": name})
    _, reward, terminated, _, info = env.step(call("submit", answer="definitely wrong 123456"))
    assert terminated and reward == 0.0 and info["correct"] is False and info["why"]


def test_plain_text_answer_ends_the_episode(env: PythonToolsEnv) -> None:
    env.reset(seed=5, options={"template": "base64_secret"})
    secret = env.tool_task.answer
    _, reward, terminated, _, _ = env.step(f"I decoded the file. The answer is: {secret}")
    assert reward == 1.0 and terminated


def test_tools_act_in_the_episode_sandbox(env: PythonToolsEnv) -> None:
    env.reset(seed=1, options={"template": "text_word_count"})
    obs, *_ = env.step(call("write_file", path="notes/n.txt", content="hello"))
    assert obs[-1]["content"] == "Wrote 5 bytes to notes/n.txt."
    obs, *_ = env.step(call("read_file", 1, path="notes/n.txt"))
    assert obs[-1]["content"] == "hello"
    obs, *_ = env.step(call("run_shell", 2, command="ls text; id -u"))
    assert "essay.txt" in obs[-1]["content"] and "1000" in obs[-1]["content"]
    obs, _, _, _, info = env.step(call("read_file", 3, path="missing.txt"))
    assert "does not exist" in obs[-1]["content"] and info["tool_errors"] == 1
    obs, _, _, _, info = env.step(call("no_such_tool", 4))
    assert "unknown tool" in obs[-1]["content"]


def test_command_timeout_is_reported_to_the_model(pool: SandboxPool) -> None:
    env = PythonToolsEnv(pool=pool, tool_timeout=1.0)
    try:
        env.reset(seed=0)
        t0 = time.monotonic()
        obs, _, terminated, _, _ = env.step(call("run_shell", command="sleep 30"))
        assert "timed out" in obs[-1]["content"] and not terminated
        assert time.monotonic() - t0 < 8
    finally:
        env.close()


def test_episodes_do_not_see_each_other(env: PythonToolsEnv) -> None:
    env.reset(seed=0, options={"template": "csv_column_mean"})
    env.step(call("write_file", path="leftover.txt", content="x"))
    env.reset(seed=1, options={"template": "file_sha256"})
    obs, *_ = env.step(call("run_shell", command="ls -A /work"))
    assert "leftover.txt" not in obs[-1]["content"] and "data" in obs[-1]["content"]


def test_schemas_determinism_and_release(pool: SandboxPool) -> None:
    env = PythonToolsEnv(pool=pool)
    try:
        names = [t["function"]["name"] for t in env.tool_schemas]
        assert names == ["run_python", "run_shell", "write_file", "read_file", "submit"]
        a = [env.reset(seed=s)[0] for s in range(4)]
        assert a == [env.reset(seed=s)[0] for s in range(4)]
        assert pool.busy == 1
    finally:
        env.close()
        env.close()
    assert pool.busy == 0


def test_envkit_check_passes() -> None:
    results = run_checks("PythonTools-v0")
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown templates"):
        PythonToolsEnv(templates=["nope"])


def test_container_killed_mid_episode_is_an_infra_error(pool: SandboxPool) -> None:
    made: list[PythonToolsEnv] = []

    def factory() -> PythonToolsEnv:
        made.append(PythonToolsEnv(pool=pool))
        return made[-1]

    def policy(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
        made[0]._sandbox.kill()
        return call("run_shell", command="ls")

    groups = envkit.collect(factory, CallablePolicy(policy), seeds=[0], progress=False)
    traj = groups[0][0]
    assert traj.outcome == "infra_error" and traj.reward is None
    assert "SandboxDiedError" in (traj.error or "")
    json.loads(traj.model_dump_json())
