"""``HFPolicy`` on the real tiny-random transformers model: batching, tokens, logprobs, tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import envkit
from envkit import ChatEnv, Feedback, Task, ToolBox, tool
from envkit.models import load_model
from envkit.policies import HFPolicy, Policy, load_policy
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


def request(text: str, tools: list[dict[str, Any]] | None = None) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content=text)], tools=tools)


def rescore(
    model: Any, prompt: list[int], tokens: list[int], temperature: float = 1.0
) -> list[float]:
    """Log-probs of ``tokens`` after ``prompt`` from one plain forward pass."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens], device=device)).logits[0].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]


class CountingGenerate:
    """Wraps ``model.generate`` to count calls and record batch sizes (the real one runs)."""

    def __init__(self, model: Any) -> None:
        self.inner = model.generate
        self.batch_sizes: list[int] = []
        model.generate = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.batch_sizes.append(int(kwargs["input_ids"].shape[0]))
        return self.inner(*args, **kwargs)


@pytest.fixture
def fresh() -> tuple[Any, Any]:
    """A tiny-random model the test may modify."""
    return load_model("tiny-random")


def test_is_a_policy_and_generates(tiny):
    policy = HFPolicy(*tiny, max_new_tokens=8, seed=0)
    assert isinstance(policy, Policy)
    [c] = policy.generate([request("hi")])
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str)
    assert 1 <= len(c.token_ids) <= 8
    assert len(c.logprobs) == len(c.token_ids)
    assert all(lp <= 0 for lp in c.logprobs)
    assert c.prompt_token_ids == policy.render(request("hi"))
    assert c.usage.prompt_tokens == len(c.prompt_token_ids)
    assert c.usage.completion_tokens == len(c.token_ids)
    assert c.finish_reason in ("stop", "length")


def test_prompt_is_the_chat_template_rendering_with_tools(tiny):
    model, tok = tiny
    policy = HFPolicy(model, tok)
    ids = policy.render(request("What is 1 + 2?", tools=TOOLS))
    text = tok.decode(ids)
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text
    assert text.endswith("<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_renders_openai_tool_calls_and_none_content(tiny):
    model, tok = tiny
    policy = HFPolicy(model, tok)
    messages = [
        Message(role="user", content="add"),
        Message.coerce(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c0",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 1}'},
                    },
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "add", "arguments": "{bad"},
                    },
                ],
            }
        ),
        Message(role="tool", tool_call_id="c0", content="2"),
    ]
    text = tok.decode(policy.render(GenerationRequest(messages=messages, tools=TOOLS)))
    assert '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>' in text
    assert '{"name": "add", "arguments": {bad}' in text  # malformed JSON is shown as written
    assert "<tool_response>\n2\n</tool_response>" in text


def test_length_finish_has_exactly_max_new_tokens(tiny):
    model, tok = tiny
    policy = HFPolicy(model, tok, max_new_tokens=5, temperature=0)
    [c] = policy.generate([request("hello")])
    assert c.finish_reason == "length"  # greedy tiny-random does not write <|im_end|> so soon
    assert len(c.token_ids) == 5
    assert not set(c.token_ids) & set(policy.stop_token_ids)
    assert c.message.content == tok.decode(c.token_ids)


def test_stop_token_ends_the_turn_and_is_kept_in_token_ids(tiny):
    model, tok = tiny
    every_token = list(range(len(tok)))  # whatever is sampled first ends the turn
    policy = HFPolicy(model, tok, max_new_tokens=10, stop_token_ids=every_token, seed=1)
    completions = policy.generate([request("a"), request("a much longer prompt " * 5)])
    for c in completions:
        assert c.finish_reason == "stop"
        assert len(c.token_ids) == 1 == len(c.logprobs)
        assert c.message.content == ""  # the stop token is not part of the text


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_logprobs_match_a_forward_pass_over_the_sampled_tokens(tiny, temperature):
    model, tok = tiny
    policy = HFPolicy(model, tok, max_new_tokens=12, temperature=temperature, seed=3)
    # different prompt lengths in one batch: left padding must not change the numbers
    requests = [request("x"), request("a longer question about many things?"), request("hi there")]
    completions = policy.generate(requests)
    assert policy.stats.batches == 1
    for c in completions:
        expected = rescore(model, c.prompt_token_ids, c.token_ids, temperature or 1.0)
        assert c.logprobs == pytest.approx(expected, abs=2e-4)


def test_top_p_does_not_change_the_logprob_convention(tiny):
    model, tok = tiny
    policy = HFPolicy(model, tok, max_new_tokens=6, top_p=0.5, top_k=20, seed=0)
    [c] = policy.generate([request("q")])
    assert c.logprobs == pytest.approx(rescore(model, c.prompt_token_ids, c.token_ids), abs=2e-4)


def test_greedy_output_does_not_depend_on_the_batch(tiny):
    model, tok = tiny
    policy = HFPolicy(model, tok, max_new_tokens=10, temperature=0)
    prompts = ["short", "a considerably longer prompt than the other ones", "mid length"]
    alone = [policy.generate([request(p)])[0].token_ids for p in prompts]
    together = [c.token_ids for c in policy.generate([request(p) for p in prompts])]
    assert together == alone


def test_concurrent_calls_are_batched(fresh):
    model, tok = fresh
    counter = CountingGenerate(model)
    policy = HFPolicy(model, tok, max_new_tokens=4, max_batch_size=8, seed=0)

    async def episode(i: int) -> Any:
        await asyncio.sleep(0.001 * (i % 3))  # episodes do not arrive all at once
        return (await policy.agenerate([request(f"episode {i}")]))[0]

    async def main() -> list[Any]:
        return await asyncio.gather(*(episode(i) for i in range(20)))

    completions = asyncio.run(main())
    assert len(completions) == 20
    assert all(len(c.token_ids) == len(c.logprobs) >= 1 for c in completions)
    assert len(counter.batch_sizes) < 20
    assert sum(counter.batch_sizes) == 20
    assert max(counter.batch_sizes) <= 8
    assert policy.stats.batches == len(counter.batch_sizes)
    assert policy.stats.requests == 20
    assert policy.stats.max_batch == max(counter.batch_sizes)
    # each caller got the answer to its own prompt
    for i, c in enumerate(completions):
        assert tok.decode(c.prompt_token_ids).endswith(
            f"episode {i}<|im_end|>\n<|im_start|>assistant\n"
        )


def test_the_event_loop_stays_free_while_generating(tiny):
    policy = HFPolicy(*tiny, max_new_tokens=64, seed=0)
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        [c] = await policy.agenerate([request("tick")])
        stop.set()
        await task
        assert len(c.token_ids) == 64

    asyncio.run(main())
    assert ticks > 3  # the loop ran other work during the 64-token generation


def test_a_generate_error_reaches_every_caller_and_the_policy_recovers(fresh):
    model, tok = fresh
    policy = HFPolicy(model, tok, max_new_tokens=3)
    real = model.generate
    model.generate = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("CUDA out of memory"))

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(policy.agenerate([request(str(i))]) for i in range(3)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "out of memory" in str(r) for r in results)
    model.generate = real
    assert len(policy.generate([request("again")])) == 1


def test_a_cancelled_caller_does_not_break_the_others(tiny):
    policy = HFPolicy(*tiny, max_new_tokens=4, batch_wait_s=0.05)

    async def main() -> list[Any]:
        doomed = asyncio.create_task(policy.agenerate([request("doomed")]))
        others = [asyncio.create_task(policy.agenerate([request(f"ok {i}")])) for i in range(3)]
        await asyncio.sleep(0)
        doomed.cancel()
        return [await t for t in others]

    results = asyncio.run(main())
    assert [len(r) for r in results] == [1, 1, 1]
    assert policy.stats.requests == 3  # the cancelled request was never generated


def test_seed_makes_sampling_reproducible_without_touching_the_global_rng(tiny):
    import torch

    state = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        policy = HFPolicy(*tiny, max_new_tokens=8, seed=123)
        runs.append([c.token_ids for c in policy.generate([request("a"), request("b")])])
    assert runs[0] == runs[1]
    assert torch.equal(state, torch.random.get_rng_state())
    other = HFPolicy(*tiny, max_new_tokens=8, seed=124)
    assert [c.token_ids for c in other.generate([request("a"), request("b")])] != runs[0]


def test_training_mode_is_restored_after_sampling(fresh):
    model, tok = fresh
    model.train()
    policy = HFPolicy(model, tok, max_new_tokens=2)
    seen = []
    real = model.generate
    model.generate = lambda *a, **k: (seen.append(model.training), real(*a, **k))[1]
    policy.generate([request("x")])
    assert seen == [False]  # sampled in eval mode (no dropout)
    assert model.training


def test_generate_works_inside_a_running_loop(tiny):
    policy = HFPolicy(*tiny, max_new_tokens=2)

    async def main() -> Any:
        return policy.generate([request("nested")])  # sync call from async code

    assert len(asyncio.run(main())) == 1


def test_prompt_too_long_for_the_context_is_a_clear_error(fresh):
    model, tok = fresh
    model.config.max_position_embeddings = 64
    policy = HFPolicy(model, tok, max_new_tokens=16)
    with pytest.raises(ValueError, match="exceeds the model's context of 64 tokens"):
        policy.generate([request("x" * 100)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
        ({"top_k": -5}, "top_k must be >= 0"),
        ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"batch_wait_s": -1}, "batch_wait_s must be >= 0"),
    ],
)
def test_bad_arguments_are_rejected(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HFPolicy(*tiny, **kwargs)


def test_a_tokenizer_without_chat_template_is_rejected(fresh):
    model, tok = fresh
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        HFPolicy(model, tok)


# ------------------------------------------------------------------ adapters


@pytest.fixture
def lora_dir(tmp_path):
    """A LoRA adapter for tiny-random with random (non-zero) weights, saved in peft format."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_model("tiny-random")
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        peft_model = get_peft_model(model, config)
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.data.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "lora")
    return tmp_path / "lora"


def test_adapter_changes_outputs_and_can_be_switched_off(fresh, lora_dir):
    model, tok = fresh
    prompts = [request("same prompt"), request("another one")]
    base = [
        c.token_ids for c in HFPolicy(model, tok, max_new_tokens=8, temperature=0).generate(prompts)
    ]

    policy = HFPolicy(
        model, tok, max_new_tokens=8, temperature=0, adapter=lora_dir, adapter_name="a"
    )
    assert policy.adapters == ["a"]
    adapted = [c.token_ids for c in policy.generate(prompts)]
    assert adapted != base
    # logprobs are those of the adapted model
    c = policy.generate(prompts[:1])[0]
    assert c.logprobs == pytest.approx(
        rescore(policy.model, c.prompt_token_ids, c.token_ids), abs=2e-4
    )

    policy.use_adapter(None)
    assert [c.token_ids for c in policy.generate(prompts)] == base
    policy.load_adapter(lora_dir, "b")
    policy.use_adapter("b")
    assert [c.token_ids for c in policy.generate(prompts)] == adapted


def test_adapter_errors_are_clear(fresh, lora_dir, tmp_path):
    policy = HFPolicy(*fresh)
    with pytest.raises(ValueError, match="not a peft adapter directory"):
        policy.load_adapter(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no adapter named 'x'"):
        policy.use_adapter("x")
    policy.load_adapter(lora_dir, "a")
    with pytest.raises(ValueError, match="already loaded"):
        policy.load_adapter(lora_dir, "a")


# ------------------------------------------------------------------ tool calls end to end


@tool
def add(a: int, b: int) -> int:
    """Adds two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


class AddEnv(ChatEnv):
    """Asks for 1 + 2 and offers the ``add`` tool; the episode continues after tool turns."""

    def __init__(self) -> None:
        super().__init__(max_turns=2, toolbox=ToolBox([add]))

    def make_task(self, options: dict[str, Any] | None) -> Task:
        return Task(messages=[{"role": "user", "content": "What is 1 + 2?"}], answer="3")

    def respond(self, message: Message) -> Feedback:
        ok = "3" in (message.content or "")
        return Feedback(reward=float(ok), done=ok)


CALL_TEXT = 'Adding.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


@pytest.fixture(scope="module")
def tool_caller() -> tuple[Any, Any, list[int]]:
    """tiny-random fine-tuned (in seconds) to answer AddEnv's prompt with ``CALL_TEXT``."""
    import torch

    model, tok = load_model("tiny-random")
    env = AddEnv()
    obs, _ = env.reset(seed=0)
    prompt = HFPolicy(model, tok).render(
        GenerationRequest(messages=[Message.coerce(m) for m in obs], tools=env.tool_schemas)
    )
    env.close()
    target = [*tok.encode(CALL_TEXT, add_special_tokens=False), tok.eos_token_id]
    ids = torch.tensor([prompt + target])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains fastest on one thread
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(400):
                out = model(input_ids=ids, labels=labels)
                greedy = out.logits[0, len(prompt) - 1 : -1].argmax(-1)
                if greedy.tolist() == target:
                    break
                optimizer.zero_grad()
                out.loss.backward()
                optimizer.step()
            model.eval()
    finally:
        torch.set_num_threads(threads)
    assert greedy.tolist() == target, "the tiny model did not learn the tool call"
    return model, tok, target


def test_model_written_tool_call_becomes_an_openai_tool_call(tool_caller):
    model, tok, target = tool_caller
    policy = HFPolicy(model, tok, max_new_tokens=64, temperature=0)
    env = AddEnv()
    obs, _ = env.reset(seed=0)
    req = GenerationRequest(messages=[Message.coerce(m) for m in obs], tools=env.tool_schemas)
    env.close()
    [c] = policy.generate([req])
    assert c.token_ids == target
    assert c.finish_reason == "stop"
    assert c.message.content == "Adding."
    [call] = c.message.tool_calls
    assert call.function.name == "add"
    assert json.loads(call.function.arguments) == {"a": 1, "b": 2}
    assert call.id.startswith("call_")
    # without tools in the request, the text is left alone
    [plain] = policy.generate([GenerationRequest(messages=req.messages, tools=None)])
    assert plain.message.tool_calls is None


def test_rollout_runs_the_models_tool_call_through_the_env(tool_caller):
    model, tok, target = tool_caller
    policy = HFPolicy(model, tok, max_new_tokens=64, temperature=0)
    [group] = envkit.collect(AddEnv, policy, seeds=[0], group_size=3, concurrency=3)
    assert policy.stats.requests == 6  # 3 episodes x 2 turns
    assert policy.stats.batches < 6
    for traj in group:
        assert traj.outcome == "truncated"  # the tiny model never writes "3" after the tool
        first = traj.completions[0]
        assert first.token_ids == target
        tool_msg = traj.messages[2]
        assert tool_msg.role == "tool"
        assert tool_msg.tool_call_id == first.message.tool_calls[0].id
        assert tool_msg.content == "3"


def test_load_policy_builds_an_hf_policy_from_a_saved_model(tool_caller, tmp_path):
    model, tok, target = tool_caller
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    policy = load_policy(f"hf:{tmp_path}", temperature=0, max_tokens=64)
    assert isinstance(policy, HFPolicy)
    assert policy.max_new_tokens == 64
    env = AddEnv()
    obs, _ = env.reset(seed=0)
    env.close()
    req = GenerationRequest(messages=[Message.coerce(m) for m in obs], tools=env.tool_schemas)
    assert policy.generate([req])[0].token_ids == target


@pytest.mark.gpu
def test_samples_on_cuda_with_consistent_logprobs():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    policy = HFPolicy.from_pretrained("tiny-random", device="cuda", max_new_tokens=8, seed=0)
    completions = policy.generate([request("a"), request("a longer prompt")])
    again = HFPolicy(policy.model, policy.tokenizer, max_new_tokens=8, seed=0)
    assert [c.token_ids for c in again.generate([request("a"), request("a longer prompt")])] == [
        c.token_ids for c in completions
    ]
    for c in completions:
        expected = rescore(policy.model, c.prompt_token_ids, c.token_ids)
        assert c.logprobs == pytest.approx(expected, abs=1e-3)


# ---------------------------------------------------------------------- continuous batching

needs_cb = pytest.mark.skipif(
    __import__("envkit.trainers._compat", fromlist=["x"]).continuous_batching_available() is False,
    reason="the installed transformers has no continuous batching",
)


@needs_cb
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_continuous_engine_logprobs_match_a_forward_pass(fresh, temperature):
    model, tok = fresh
    policy = HFPolicy(
        model, tok, max_new_tokens=10, temperature=temperature, seed=1, engine="continuous"
    )
    try:
        requests = [request("x"), request("a longer question about many things?"), request("hi")]
        completions = policy.generate(requests)
    finally:
        policy.close()
    assert policy.runtime["engine"] == "continuous"
    for c in completions:
        assert 1 <= len(c.token_ids) == len(c.logprobs) <= 10
        assert c.finish_reason in ("stop", "length")
        expected = rescore(model, c.prompt_token_ids, c.token_ids, temperature or 1.0)
        assert c.logprobs == pytest.approx(expected, abs=2e-4)


@needs_cb
def test_continuous_engine_cache_is_sized_for_the_cpu_not_60_percent_of_ram(fresh):
    from envkit.policies.hf_continuous import CPU_CACHE_BLOCKS, ContinuousEngine

    model, tok = fresh
    policy = HFPolicy(model, tok, max_new_tokens=4, engine="continuous", seed=0)
    try:
        (c,) = policy.generate([request("hi")])
        manager = policy._continuous._manager
        cache = getattr(manager, "cache", None) or manager.batch_processor.cache
        # transformers alone sizes a CPU model's paged cache at 60 % of the machine's RAM
        # (14 GB here, for a tiny model): the engine passes a bounded capacity instead.
        assert cache.num_blocks == CPU_CACHE_BLOCKS
        assert 1 <= len(c.token_ids) <= 4
    finally:
        policy.close()
    engine = ContinuousEngine(model, None, stop_token_ids=[0], max_new_tokens=4, cache_blocks=8)
    assert engine.resolved_cache_blocks() == 8
    with pytest.raises(ValueError, match="cache_blocks must be >= 1"):
        ContinuousEngine(model, None, stop_token_ids=[0], max_new_tokens=4, cache_blocks=0)


@needs_cb
def test_continuous_engine_serves_requests_that_arrive_at_different_times(fresh):
    model, tok = fresh
    policy = HFPolicy(model, tok, max_new_tokens=6, engine="continuous", seed=0)

    async def staggered() -> list[Any]:
        async def one(i: int) -> Any:
            await asyncio.sleep(0.01 * i)
            return await policy.agenerate([request(f"question {i}")])

        return await asyncio.gather(*(one(i) for i in range(6)))

    try:
        results = asyncio.run(staggered())
    finally:
        policy.close()
    assert len(results) == 6 and all(len(r) == 1 for r in results)
    for (c,) in results:
        assert c.logprobs == pytest.approx(
            rescore(model, c.prompt_token_ids, c.token_ids), abs=2e-4
        )


@needs_cb
def test_continuous_engine_refuses_what_it_cannot_do_exactly(fresh):
    model, tok = fresh
    with pytest.raises(ValueError, match="top_p=1 and top_k=0"):
        HFPolicy(model, tok, top_p=0.9, engine="continuous")
    policy = HFPolicy(model, tok, engine="continuous")
    with pytest.raises(ValueError, match="cannot switch adapters"):
        policy.use_adapter(None)


def test_unknown_engine_is_rejected(fresh):
    model, tok = fresh
    with pytest.raises(ValueError, match="engine must be 'auto', 'padded' or 'continuous'"):
        HFPolicy(model, tok, engine="paged")
    assert HFPolicy(model, tok).runtime["engine"] == "padded"


# ------------------------------------------------------------------ the public generation call


def test_generate_ids_gives_each_request_its_own_sampling_parameters(fresh):
    from envkit.policies.hf import IdsRequest, SamplingParams

    model, tok = fresh
    counter = CountingGenerate(model)
    policy = HFPolicy(model, tok, max_new_tokens=12, seed=0)
    ids = policy.render(request("the same prompt"))
    greedy3 = SamplingParams(max_tokens=3, temperature=0)
    hot = SamplingParams(max_tokens=6, temperature=0.7, seed=5)
    a, b, c, d = policy.generate_ids(
        [IdsRequest(ids, greedy3), IdsRequest(ids, hot), IdsRequest(ids, greedy3), IdsRequest(ids)]
    )
    # three parameter sets: three batches, never mixed (the two greedy3 requests share one)
    assert sorted(counter.batch_sizes) == [1, 1, 2]
    assert policy.stats.batches == 3 and policy.stats.requests == 4
    assert a.token_ids == c.token_ids and len(a.token_ids) == 3 and a.finish_reason == "length"
    alone = HFPolicy(model, tok, max_new_tokens=3, temperature=0).generate_ids([IdsRequest(ids)])
    assert a.token_ids == alone[0].token_ids
    assert 1 <= len(b.token_ids) <= 6 and 1 <= len(d.token_ids) <= 12
    for completion, temperature in ((a, 1.0), (b, 0.7), (d, 1.0)):
        assert completion.prompt_token_ids == ids
        expected = rescore(model, ids, completion.token_ids, temperature)
        assert completion.logprobs == pytest.approx(expected, abs=2e-4)


def test_generate_ids_per_request_stop_tokens_and_seeds(tiny):
    from envkit.policies.hf import IdsRequest, SamplingParams

    policy = HFPolicy(*tiny, max_new_tokens=8)
    ids = policy.render(request("stop me"))
    [free] = policy.generate_ids([IdsRequest(ids, SamplingParams(max_tokens=8, temperature=0))])
    second = free.token_ids[1]
    [cut] = policy.generate_ids(
        [IdsRequest(ids, SamplingParams(max_tokens=8, temperature=0, stop_token_ids=[second]))]
    )
    first = free.token_ids.index(second)  # greedy tiny-random may repeat a token
    assert cut.token_ids == free.token_ids[: first + 1] and cut.finish_reason == "stop"

    def sample(seed: int) -> list[int]:
        params = SamplingParams(max_tokens=8, seed=seed)
        return policy.generate_ids([IdsRequest(ids, params)])[0].token_ids

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_generate_ids_picks_the_adapter_per_request(fresh, lora_dir):
    from envkit.policies.hf import IdsRequest, SamplingParams

    model, tok = fresh
    policy = HFPolicy(model, tok, max_new_tokens=6, temperature=0)
    ids = policy.render(request("same prompt"))
    [base] = policy.generate_ids([IdsRequest(ids)])
    policy.load_adapter(lora_dir, "a")
    policy.use_adapter(None)  # requests without an adapter: the base model
    params = SamplingParams(max_tokens=6, temperature=0)
    tuned, plain = policy.generate_ids(
        [IdsRequest(ids, params, adapter="a"), IdsRequest(ids, params)]
    )
    assert plain.token_ids == base.token_ids
    assert tuned.token_ids != base.token_ids
    assert tuned.logprobs == pytest.approx(
        rescore(policy.model, ids, tuned.token_ids), abs=2e-4
    )  # the active adapter after the call is "a", whose logprobs these are
    assert policy.stats.batches_by_adapter == {"": 2, "a": 1}
    policy.unload_adapter("a")
    assert policy.adapters == []
    assert policy.generate_ids([IdsRequest(ids)])[0].token_ids == base.token_ids
    with pytest.raises(ValueError, match="no adapter named 'a'"):
        policy.generate_ids([IdsRequest(ids, adapter="a")])
    with pytest.raises(ValueError, match="no adapter named 'a'"):
        policy.unload_adapter("a")


def test_episodes_and_generate_ids_go_through_the_one_sampling_backend(tiny):
    from envkit.policies.hf import IdsRequest, Sample

    class Recording(HFPolicy):
        """The ``sample_batch`` hook is the only backend: record what reaches it."""

        seen: list[Any]

        def sample_batch(self, requests: Any) -> list[Sample]:
            self.seen = [*getattr(self, "seen", []), *requests]
            return super().sample_batch(requests)

    policy = Recording(*tiny, max_new_tokens=3, temperature=0)
    [episode] = policy.generate([request("hi")])
    [direct] = policy.generate_ids([IdsRequest(episode.prompt_token_ids)])
    assert [r.prompt_ids for r in policy.seen] == [tuple(episode.prompt_token_ids)] * 2
    assert policy.seen[0].params == policy.sampling_params()
    assert direct.token_ids == episode.token_ids


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tokens": 0}, r"max_tokens must be >= 1"),
        ({"max_tokens": "8"}, r"max_tokens must be >= 1 \(an int\), got '8'"),
        ({"temperature": -0.5}, "temperature must be >= 0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"stop_token_ids": "abc"}, "stop_token_ids must be a sequence of token ids"),
        ({"stop_token_ids": [1, -2]}, r"stop_token_ids must be token ids \(ints >= 0\)"),
        ({"seed": 1.5}, "seed must be an int or None"),
    ],
)
def test_bad_sampling_params_are_rejected_when_built(kwargs, match):
    from envkit.policies.hf import SamplingParams

    with pytest.raises(ValueError, match="invalid SamplingParams: " + match):
        SamplingParams(**kwargs)


def test_bad_ids_requests_are_clear_errors(fresh):
    from envkit.policies.hf import IdsRequest, SamplingParams

    with pytest.raises(ValueError, match="prompt_ids is empty"):
        IdsRequest([])
    with pytest.raises(ValueError, match=r"prompt_ids must be token ids.*\[-1\]"):
        IdsRequest([3, -1])
    with pytest.raises(ValueError, match="prompt_ids must be a sequence of token ids, got str"):
        IdsRequest("hello")
    with pytest.raises(ValueError, match="params must be a SamplingParams or None, got dict"):
        IdsRequest([1], {"max_tokens": 3})  # type: ignore[arg-type]
    model, tok = fresh
    model.config.max_position_embeddings = 64
    policy = HFPolicy(model, tok)
    with pytest.raises(TypeError, match="takes IdsRequest items, got GenerationRequest"):
        policy.generate_ids([request("hi")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="exceeds the model's context of 64 tokens"):
        policy.generate_ids([IdsRequest([1] * 10, SamplingParams(max_tokens=60))])
