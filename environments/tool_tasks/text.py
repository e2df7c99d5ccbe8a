"""Tool-use templates over text and binary files."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter

import numpy as np

from envkit.environments.tool_tasks._model import WORDS, ToolTask, pick, template


def _prose(rng: np.random.Generator, n_lines: int) -> list[str]:
    return [
        " ".join(pick(rng, WORDS, size=int(rng.integers(4, 12)))).capitalize() + "."
        for _ in range(n_lines)
    ]


@template
def text_most_common_word(rng: np.random.Generator) -> ToolTask:
    lines = _prose(rng, int(rng.integers(20, 50)))
    favourite = pick(rng, WORDS)
    lines = [f"{line[:-1]} {favourite} {favourite}." for line in lines[:5]] + lines[5:]
    counts = Counter(w.strip(".").lower() for line in lines for w in line.split())
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return ToolTask(
        "text_most_common_word",
        "Which word occurs most often in text/story.txt, ignoring case and punctuation? If "
        "several tie, give the alphabetically first. Answer with the word in lower case.",
        {"text/story.txt": "\n".join(lines) + "\n"},
        best,
        "str",
    )


@template
def text_first_line_of_word(rng: np.random.Generator) -> ToolTask:
    lines = _prose(rng, int(rng.integers(30, 80)))
    word = f"{pick(rng, WORDS)}ish"
    at = int(rng.integers(len(lines) // 3, len(lines)))
    lines.insert(at, f"Then came the {word} hour.")
    lines.append(f"Again {word}.")
    return ToolTask(
        "text_first_line_of_word",
        f"On which line of text/poem.txt does the word `{word}` first appear? Lines are "
        "numbered from 1. Answer with the number.",
        {"text/poem.txt": "\n".join(lines) + "\n"},
        at + 1,
        "int",
    )


@template
def text_word_count(rng: np.random.Generator) -> ToolTask:
    lines = _prose(rng, int(rng.integers(10, 40)))
    return ToolTask(
        "text_word_count",
        "How many words (whitespace-separated tokens) does text/essay.txt contain? Answer with "
        "the number.",
        {"text/essay.txt": "\n".join(lines) + "\n"},
        sum(len(line.split()) for line in lines),
        "int",
    )


@template
def file_sha256(rng: np.random.Generator) -> ToolTask:
    blob = bytes(int(b) for b in rng.integers(0, 256, size=int(rng.integers(500, 5000))))
    return ToolTask(
        "file_sha256",
        "What is the SHA-256 digest of the file data/blob.bin, in lower-case hexadecimal?",
        {"data/blob.bin": blob},
        hashlib.sha256(blob).hexdigest(),
        "str",
    )


@template
def base64_secret(rng: np.random.Generator) -> ToolTask:
    secret = "-".join(pick(rng, WORDS, size=3))
    encoded = base64.b64encode(f"the secret is {secret}".encode()).decode()
    return ToolTask(
        "base64_secret",
        "data/secret.b64 holds base64-encoded text of the form 'the secret is X'. What is X?",
        {"data/secret.b64": encoded + "\n"},
        secret,
        "str",
    )


@template
def numbers_kth_smallest(rng: np.random.Generator) -> ToolTask:
    nums = [int(x) for x in rng.integers(-1000, 1000, size=int(rng.integers(50, 200)))]
    k = int(rng.integers(1, len(nums) + 1))
    return ToolTask(
        "numbers_kth_smallest",
        f"data/numbers.txt has one integer per line. Sorted in increasing order (duplicates "
        f"kept), which number is at position {k}, counting from 1? Answer with the number.",
        {"data/numbers.txt": "\n".join(map(str, nums)) + "\n"},
        sorted(nums)[k - 1],
        "int",
    )


@template
def numbers_count_primes(rng: np.random.Generator) -> ToolTask:
    nums = [int(x) for x in rng.integers(1, 5000, size=int(rng.integers(40, 120)))]

    def is_prime(n: int) -> bool:
        return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))

    return ToolTask(
        "numbers_count_primes",
        "data/numbers.txt has one integer per line. How many of those lines hold a prime "
        "number? Answer with the number.",
        {"data/numbers.txt": "\n".join(map(str, nums)) + "\n"},
        sum(1 for n in nums if is_prime(n)),
        "int",
    )
