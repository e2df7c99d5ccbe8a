"""``envkit serve`` in a real subprocess, sampled through ``ServerPolicy``: token ids and
log-probabilities equal a local forward pass, concurrent requests are batched (per adapter),
runtime LoRA loading/unloading matches in-process peft, tool calls are parsed, errors are clear.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from adapter_support import save_random_adapter

from envkit.policies import HFPolicy, ServerPolicy
from envkit.policies.server import ServerError
from envkit.serving.process import ServerProcess, free_port
from envkit.types import GenerationRequest, Message

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]
CALL_TEXT = 'Adding.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


def request(text: str, tools: list[dict[str, Any]] | None = None) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content=text)], tools=tools)


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


@pytest.fixture(scope="module")
def server() -> Any:
    with ServerProcess("tiny-random", args=["--seed", "0"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    from envkit.models import load_model

    return load_model("tiny-random")


def local_logprobs(model: Any, prompt: list[int], tokens: list[int], temperature: float) -> Any:
    """``log softmax(logits / T)`` of ``tokens`` after ``prompt``, by one forward pass."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + tokens])).logits[0].float()
    scores = torch.log_softmax(logits[len(prompt) - 1 : -1] / temperature, dim=-1)
    return scores.gather(1, torch.tensor(tokens)[:, None])[:, 0]


REQUESTS = [request("hi"), request("What is 2 + 2?"), request("Name a colour.", tools=TOOLS)]


@pytest.mark.parametrize("render", ["local", "server"])
def test_token_ids_and_logprobs_equal_a_local_forward_pass(server, tiny, render):
    import torch

    model, tok = tiny
    policy = ServerPolicy(
        server.url,
        "tiny-random",
        tokenizer=tok if render == "local" else None,
        max_new_tokens=12,
        temperature=0.7,
        seed=3,
    )
    completions = policy.generate(REQUESTS)
    local = HFPolicy(model, tok)
    for req, c in zip(REQUESTS, completions, strict=True):
        assert c.prompt_token_ids == local.render(req)
        assert c.token_ids and len(c.token_ids) == len(c.logprobs) <= 12
        assert c.finish_reason in ("stop", "length")
        expected = local_logprobs(model, c.prompt_token_ids, c.token_ids, 0.7)
        assert torch.allclose(torch.tensor(c.logprobs), expected, atol=1e-4), (c.logprobs, expected)
        assert c.usage.completion_tokens == len(c.token_ids)
    # temperature 0.7, not raw logprobs: the values differ from the temperature-1 ones
    c = completions[0]
    raw = local_logprobs(model, c.prompt_token_ids, c.token_ids, 1.0)
    assert not torch.allclose(torch.tensor(c.logprobs), raw, atol=1e-3)


def test_greedy_text_equals_in_process_hf_policy(server, tiny):
    model, tok = tiny
    remote = ServerPolicy(  # a model spec as tokenizer: loaded as envkit's commands load it
        server.url, "tiny-random", tokenizer="tiny-random", max_new_tokens=10, temperature=0
    )
    chat = ServerPolicy(server.url, "tiny-random", max_new_tokens=10, temperature=0)
    local = HFPolicy(model, tok, max_new_tokens=10, temperature=0)
    reqs = REQUESTS[:2]
    for a, b, c in zip(
        remote.generate(reqs), chat.generate(reqs), local.generate(reqs), strict=True
    ):
        assert a.token_ids == b.token_ids == c.token_ids
        assert a.message.content == b.message.content == c.message.content
        assert a.finish_reason == b.finish_reason == c.finish_reason


def test_a_seed_reproduces_a_request(server, tiny):
    _, tok = tiny

    def sample(seed: int) -> list[int]:
        policy = ServerPolicy(server.url, "tiny-random", tokenizer=tok, max_new_tokens=8, seed=seed)
        return policy.generate([request("hi")])[0].token_ids

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


@pytest.mark.parametrize("seed", [None, 0])
def test_concurrent_requests_are_batched(server, tiny, seed):
    _, tok = tiny
    before = http("GET", server.url + "/envkit/stats")[1]
    policy = ServerPolicy(server.url, "tiny-random", tokenizer=tok, max_new_tokens=4, seed=seed)
    completions = policy.generate([request(f"question {i}") for i in range(16)])
    after = http("GET", server.url + "/envkit/stats")[1]
    assert len(completions) == 16 and all(c.token_ids for c in completions)
    assert after["requests"] - before["requests"] == 16
    assert after["batches"] - before["batches"] < 16  # seeds (one per request) do not split
    assert after["max_batch"] > 1


def test_runtime_lora_adapter_matches_in_process_peft(server, tiny, tmp_path):
    import torch

    from envkit.models import load_model

    _, tok = tiny
    path = save_random_adapter(tmp_path / "a1", seed=1)
    policy = ServerPolicy(server.url, "tiny-random", tokenizer=tok, max_new_tokens=8, temperature=0)
    reqs = [request("hi"), request("What is 2 + 2?")]
    base = policy.generate(reqs)

    policy.load_adapter(path, "a1")
    assert policy.adapters == ["a1"]
    ids = [m["id"] for m in http("GET", server.url + "/v1/models")[1]["data"]]
    assert ids == ["tiny-random", "a1"]
    assert [c.token_ids for c in policy.generate(reqs)] == [c.token_ids for c in base]  # not active
    policy.use_adapter("a1")
    tuned = policy.generate(reqs)

    model, _ = load_model("tiny-random")
    local = HFPolicy(model, tok, max_new_tokens=8, temperature=0, adapter=path, adapter_name="a1")
    expected = local.generate(reqs)
    assert [c.token_ids for c in tuned] != [c.token_ids for c in base], (
        "the adapter changed nothing"
    )
    for got, want in zip(tuned, expected, strict=True):
        assert got.token_ids == want.token_ids
        assert torch.allclose(torch.tensor(got.logprobs), torch.tensor(want.logprobs), atol=1e-4)

    policy.unload_adapter("a1")
    assert policy.adapters == [] and policy.active_adapter is None
    assert [c.token_ids for c in policy.generate(reqs)] == [c.token_ids for c in base]
    assert [m["id"] for m in http("GET", server.url + "/v1/models")[1]["data"]] == ["tiny-random"]


def test_requests_for_different_adapters_never_share_a_batch(server, tiny, tmp_path):
    _, tok = tiny
    base = ServerPolicy(server.url, "tiny-random", tokenizer=tok, max_new_tokens=6, temperature=0)
    tuned = ServerPolicy(server.url, "tiny-random", tokenizer=tok, max_new_tokens=6, temperature=0)
    base.load_adapter(save_random_adapter(tmp_path / "b1", seed=2), "b1")
    tuned.use_adapter("b1")
    reqs = [request(f"say {i}") for i in range(6)]
    alone_base, alone_tuned = base.generate(reqs), tuned.generate(reqs)
    results: dict[str, Any] = {}

    def run(name: str, policy: ServerPolicy) -> None:
        results[name] = policy.generate(reqs)

    threads = [
        threading.Thread(target=run, args=("base", base)),
        threading.Thread(target=run, args=("tuned", tuned)),
    ]
    before = http("GET", server.url + "/envkit/stats")[1]["batches_by_adapter"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = http("GET", server.url + "/envkit/stats")[1]["batches_by_adapter"]
    base.unload_adapter("b1")
    assert [c.token_ids for c in results["base"]] == [c.token_ids for c in alone_base]
    assert [c.token_ids for c in results["tuned"]] == [c.token_ids for c in alone_tuned]
    assert [c.token_ids for c in alone_base] != [c.token_ids for c in alone_tuned]
    assert after["b1"] > before.get("b1", 0) and after[""] > before[""]


def test_errors_are_openai_style_json(server, tmp_path):
    url = server.url
    status, body = http("POST", url + "/v1/completions", {"prompt": "hi", "n": 2})
    assert status == 400 and "n=2" in body["error"]["message"]
    assert body["error"]["type"] == "BadRequestError" and body["error"]["code"] == 400
    status, body = http("POST", url + "/v1/completions", {"model": "nope", "prompt": [1, 2]})
    assert status == 404 and "nope" in body["error"]["message"]
    status, body = http("POST", url + "/v1/unload_lora_adapter", {"lora_name": "ghost"})
    assert status == 404 and "ghost" in body["error"]["message"]
    status, body = http(
        "POST", url + "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(tmp_path)}
    )
    assert status == 400 and "adapter_config.json" in body["error"]["message"]
    missing = str(tmp_path / "missing")
    status, body = http(
        "POST", url + "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": missing}
    )
    assert status == 404 and "No adapter found" in body["error"]["message"]
    status, body = http("POST", url + "/v1/completions", {"prompt": "hi", "logprobs": 5})
    assert status == 400 and "logprobs=0" in body["error"]["message"]
    status, body = http("POST", url + "/v1/chat/completions", {"messages": "hi"})
    assert status == 400 and "messages" in body["error"]["message"]
    status, body = http("POST", url + "/v1/completions", {"prompt": [1], "max_tokens": 10**6})
    assert status == 400 and "maximum context length" in body["error"]["message"]
    status, body = http("GET", url + "/v1/nothing")
    assert status == 404
    assert http("GET", url + "/health")[0] == 200


def test_policy_errors_name_the_url(server, tiny, tmp_path):
    _, tok = tiny
    policy = ServerPolicy(server.url, "tiny-random", tokenizer=tok, max_new_tokens=2)
    with pytest.raises(ServerError, match=r"HTTP 404.*cannot be found") as info:
        policy.unload_adapter("ghost")
    assert info.value.status == 404 and info.value.url.endswith("/v1/unload_lora_adapter")
    with pytest.raises(ServerError, match=r"adapter_config\.json"):
        policy.load_adapter(tmp_path, "x")
    policy.use_adapter("never-loaded")
    with pytest.raises(ServerError, match="does not exist"):
        policy.generate([request("hi")])
    port = free_port()
    down = ServerPolicy(f"http://127.0.0.1:{port}/v1", "m", max_retries=1)
    with pytest.raises(ServerError, match=rf"127\.0\.0\.1:{port}/v1/chat/completions.*running"):
        down.generate([request("hi")])


def test_a_server_without_token_data_is_named(tiny):
    from envkit.testing import ScriptedOpenAIServer

    _, tok = tiny
    with ScriptedOpenAIServer() as plain:  # an OpenAI-compatible server without vLLM's fields
        chat = ServerPolicy(plain.url, "m", max_retries=0)
        with pytest.raises(ServerError, match=r"/v1/chat/completions answered without token ids"):
            chat.generate([request("hi")])
        # the tokenizer path needs /v1/completions, which this server lacks
        tokens = ServerPolicy(plain.url, "m", tokenizer=tok, max_retries=0)
        with pytest.raises(ServerError, match=r"/v1/completions answered HTTP 404") as e:
            tokens.generate([request("hi")])
        assert e.value.status == 404


def test_completions_api_shapes(server, tiny):
    _, tok = tiny
    status, body = http(
        "POST",
        server.url + "/v1/completions",
        {"prompt": "hello", "max_tokens": 3, "logprobs": 0, "return_tokens_as_token_ids": True},
    )
    assert status == 200
    [choice] = body["choices"]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 3
    assert all(t.startswith("token_id:") for t in lp["tokens"])
    assert choice["token_ids"] is None and choice["finish_reason"] == "length"
    ids = [int(t.split(":")[1]) for t in lp["tokens"]]
    assert choice["text"] == tok.decode(ids)
    assert body["usage"]["prompt_tokens"] == len(
        tok("hello", add_special_tokens=False)["input_ids"]
    )


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory) -> Path:
    """tiny-random fine-tuned (seconds) to answer ``"1 + 2?"`` with ``CALL_TEXT``, saved."""
    import torch

    from envkit.models import load_model

    model, tok = load_model("tiny-random")
    prompt = HFPolicy(model, tok).render(request("1 + 2?", tools=TOOLS))
    target = [*tok.encode(CALL_TEXT, add_special_tokens=False), tok.eos_token_id]
    ids = torch.tensor([prompt + target])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(400):
            out = model(input_ids=ids, labels=labels)
            if out.logits[0, len(prompt) - 1 : -1].argmax(-1).tolist() == target:
                break
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
    assert out.logits[0, len(prompt) - 1 : -1].argmax(-1).tolist() == target
    path = tmp_path_factory.mktemp("tool-model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_tool_calls_are_parsed_both_ways(tool_model_dir):
    from envkit.models import load_model

    _, tok = load_model(str(tool_model_dir))
    with ServerProcess(str(tool_model_dir)) as proc:
        for tokenizer in (tok, None):
            policy = ServerPolicy(
                proc.url, str(tool_model_dir), tokenizer=tokenizer, max_new_tokens=64, temperature=0
            )
            [c] = policy.generate([request("1 + 2?", tools=TOOLS)])
            assert c.finish_reason == "stop"
            assert c.message.content == "Adding."
            [call] = c.message.tool_calls
            assert call.function.name == "add"
            assert json.loads(call.function.arguments) == {"a": 1, "b": 2}
            [plain] = policy.generate([request("1 + 2?")])  # no tools offered: plain text
            assert plain.message.tool_calls is None
        status, body = http(
            "POST",
            proc.url + "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "1 + 2?"}], "tools": TOOLS, "temperature": 0},
        )
        assert status == 200 and body["choices"][0]["finish_reason"] == "tool_calls"


def test_cli_help_documents_the_options():
    out = subprocess.run(
        [sys.executable, "-m", "envkit.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    ).stdout
    for option in (
        "--host",
        "--port",
        "--served-model-name",
        "--adapter",
        "--max-batch-size",
        "--device",
        "--seed",
    ):
        assert option in out
    assert "load_lora_adapter" in out


def test_server_process_reports_a_failed_start():
    with pytest.raises(RuntimeError, match="exited with code"):
        ServerProcess("/no/such/model", startup_timeout_s=60)


# ---------------------------------------------------------------- vLLM's fields: honoured or 400


NULLS = [
    *("top_k", "top_p", "temperature", "stop", "seed", "n", "stream", "stop_token_ids"),
    *("logprobs", "echo", "min_p", "repetition_penalty", "logit_bias", "response_format"),
    *("skip_special_tokens", "include_stop_str_in_output", "ignore_eos", "min_tokens"),
]
NEUTRAL = {
    "repetition_penalty": 1.0,
    "presence_penalty": 0,
    "frequency_penalty": 0.0,
    "min_p": 0.0,
    "logit_bias": {},
    "min_tokens": 0,
    "ignore_eos": False,
    "response_format": {"type": "text"},
    "skip_special_tokens": True,
    "include_stop_str_in_output": False,
    "use_beam_search": False,
    "bad_words": [],
}


@pytest.mark.parametrize("endpoint", ["completions", "chat/completions"])
def test_nulls_mean_unset_and_neutral_values_change_nothing(server, endpoint):
    prompt: dict[str, Any] = (
        {"prompt": [5, 6, 7]}
        if endpoint == "completions"
        else {"messages": [{"role": "user", "content": "hi"}]}
    )
    base = {**prompt, "max_tokens": 6, "temperature": 0, "return_token_ids": True}
    url = f"{server.url}/v1/{endpoint}"
    status, plain = http("POST", url, base)
    assert status == 200, plain
    status, nulls = http("POST", url, {**dict.fromkeys(NULLS), **base})
    assert status == 200, nulls
    status, neutral = http("POST", url, {**base, **NEUTRAL})
    assert status == 200, neutral
    expected = plain["choices"][0]["token_ids"]
    assert nulls["choices"][0]["token_ids"] == neutral["choices"][0]["token_ids"] == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repetition_penalty", 1.1),
        ("presence_penalty", 0.5),
        ("frequency_penalty", -0.2),
        ("min_p", 0.05),
        ("logit_bias", {"5": 10.0}),
        ("min_tokens", 3),
        ("ignore_eos", True),
        ("prompt_logprobs", 0),
        ("response_format", {"type": "json_object"}),
        ("use_beam_search", True),
        ("allowed_token_ids", [1, 2]),
        ("guided_choice", ["a", "b"]),
    ],
)
@pytest.mark.parametrize("endpoint", ["completions", "chat/completions"])
def test_unimplemented_fields_are_refused_by_name(server, endpoint, field, value):
    prompt: dict[str, Any] = (
        {"prompt": [5, 6, 7]}
        if endpoint == "completions"
        else {"messages": [{"role": "user", "content": "hi"}]}
    )
    status, body = http(
        "POST", f"{server.url}/v1/{endpoint}", {**prompt, "max_tokens": 2, field: value}
    )
    assert status == 400, body
    message = body["error"]["message"]
    assert f"{field}=" in message and "supports" in message, message


def test_include_stop_str_in_output_keeps_the_stop_tokens_text(server, tiny):
    _, tok = tiny
    body = {"prompt": [5, 6, 7], "max_tokens": 8, "temperature": 0, "return_token_ids": True}
    status, free = http("POST", server.url + "/v1/completions", body)
    tokens = free["choices"][0]["token_ids"]
    stop = next(t for t in tokens if t not in tok.all_special_ids and tok.decode([t]).strip())
    cut = tokens[: tokens.index(stop) + 1]
    texts = {}
    for keep in (False, True):
        status, answer = http(
            "POST",
            server.url + "/v1/completions",
            {**body, "stop_token_ids": [stop], "include_stop_str_in_output": keep},
        )
        assert status == 200, answer
        [choice] = answer["choices"]
        assert choice["token_ids"] == cut and choice["finish_reason"] == "stop"
        assert choice["stop_reason"] == stop
        texts[keep] = choice["text"]
    assert texts[False] == tok.decode(cut[:-1], skip_special_tokens=True)
    assert texts[True] == tok.decode(cut, skip_special_tokens=True)
    status, chat = http(
        "POST",
        server.url + "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "include_stop_str_in_output": True},
    )
    assert status == 400 and "include_stop_str_in_output" in chat["error"]["message"]


def test_load_inplace_replaces_an_adapters_weights(server, tiny, tmp_path):
    _, tok = tiny
    first = save_random_adapter(tmp_path / "first", seed=11)
    second = save_random_adapter(tmp_path / "second", seed=12)
    policy = ServerPolicy(server.url, "tiny-random", tokenizer=tok, max_new_tokens=6, temperature=0)
    reqs = [request("hi"), request("What is 2 + 2?")]
    policy.load_adapter(second, "ref")
    policy.use_adapter("ref")
    want = [c.token_ids for c in policy.generate(reqs)]
    policy.load_adapter(first, "swap")
    policy.use_adapter("swap")
    before = [c.token_ids for c in policy.generate(reqs)]
    assert before != want, "two random adapters gave the same answers"
    load = server.url + "/v1/load_lora_adapter"
    status, body = http("POST", load, {"lora_name": "swap", "lora_path": str(second)})
    assert status == 400 and "load_inplace" in body["error"]["message"]
    status, body = http(
        "POST", load, {"lora_name": "swap", "lora_path": str(second), "load_inplace": True}
    )
    assert status == 200, body
    assert [c.token_ids for c in policy.generate(reqs)] == want
    policy.unload_adapter("swap")
    policy.unload_adapter("ref")


def _edited_adapter(path: Path, **changes: Any) -> Path:
    save_random_adapter(path, seed=3)
    config_path = path / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(changes)
    config_path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"r": 32}, "LoRA rank 32 is greater than max_lora_rank 16"),
        ({"rank_pattern": {"q_proj": 64}}, "LoRA rank 64 is greater than max_lora_rank 16"),
        ({"bias": "all"}, "bias"),
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"target_modules": ["q_proj", "input_layernorm"]}, "cannot adapt.*input_layernorm"),
    ],
)
def test_adapters_vllm_would_refuse_are_refused_at_load(server, tmp_path, changes, message):
    path = _edited_adapter(tmp_path / "adapter", **changes)
    status, body = http(
        "POST", server.url + "/v1/load_lora_adapter", {"lora_name": "bad", "lora_path": str(path)}
    )
    assert status == 400, body
    assert re.search(message, body["error"]["message"]), body["error"]["message"]
    assert "bad" not in [m["id"] for m in http("GET", server.url + "/v1/models")[1]["data"]]


def test_max_lora_rank_is_a_server_setting(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from envkit.models import load_model
    from envkit.serving.app import InferenceServer

    model, tok = load_model("tiny-random")  # loading an adapter wraps it: not the shared one
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        peft_model = get_peft_model(
            load_model("tiny-random")[0],
            LoraConfig(r=32, target_modules="all-linear", init_lora_weights=False),
        )
    peft_model.save_pretrained(str(tmp_path / "r32"))
    with pytest.raises(ValueError, match="one of vLLM's"):
        InferenceServer(HFPolicy(model, tok), served_model_name="m", max_lora_rank=24)
    for max_rank in (16, 32):
        with InferenceServer(
            HFPolicy(model, tok), served_model_name="m", max_lora_rank=max_rank
        ) as served:
            host, port = served.address
            policy = ServerPolicy(f"http://{host}:{port}", "m", max_retries=0)
            if max_rank == 16:
                with pytest.raises(ServerError, match="--max-lora-rank of at least 32"):
                    policy.load_adapter(tmp_path / "r32", "r32")
            else:
                policy.load_adapter(tmp_path / "r32", "r32")
                assert policy.adapters == ["r32"]


def test_check_logprobs_accepts_envkit_serve(server, tiny):
    model, tok = tiny
    policy = ServerPolicy(server.url, "tiny-random", tokenizer=tok, temperature=0.7)
    assert policy.check_logprobs(model) == "processed"
