"""Coding tasks about strings. Each function is the reference solution of its task."""

from __future__ import annotations

from envkit.environments.coding_tasks._model import CodingTask, task


def run_length_encode(s: str) -> str:
    out = []
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out.append(f"{s[i]}{j - i}")
        i = j
    return "".join(out)


def decode_runs(s: str) -> str:
    out = []
    i = 0
    while i < len(s):
        letter = s[i]
        j = i + 1
        while j < len(s) and s[j].isdigit():
            j += 1
        out.append(letter * int(s[i + 1 : j]))
        i = j
    return "".join(out)


def is_balanced(s: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


def caesar_shift(text: str, k: int) -> str:
    out = []
    for ch in text:
        if "a" <= ch <= "z":
            out.append(chr((ord(ch) - 97 + k) % 26 + 97))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - 65 + k) % 26 + 65))
        else:
            out.append(ch)
    return "".join(out)


def longest_common_prefix(words: list[str]) -> str:
    if not words:
        return ""
    prefix = words[0]
    for w in words[1:]:
        while not w.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def longest_palindromic_substring(s: str) -> str:
    best = ""
    for center in range(2 * len(s) - 1):
        lo, hi = center // 2, center // 2 + center % 2
        while lo >= 0 and hi < len(s) and s[lo] == s[hi]:
            lo, hi = lo - 1, hi + 1
        candidate = s[lo + 1 : hi]
        if len(candidate) > len(best) or (
            len(candidate) == len(best) and s.find(candidate) < s.find(best)
        ):
            best = candidate
    return best


def roman_to_int(s: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, ch in enumerate(s):
        v = values[ch]
        if i + 1 < len(s) and values[s[i + 1]] > v:
            total -= v
        else:
            total += v
    return total


def title_case(s: str, minor: list[str]) -> str:
    small = {m.lower() for m in minor}
    words = s.split(" ")
    out = []
    for i, w in enumerate(words):
        if i > 0 and w.lower() in small:
            out.append(w.lower())
        else:
            out.append(w[:1].upper() + w[1:].lower())
    return " ".join(out)


TASKS: list[CodingTask] = [
    task(
        run_length_encode,
        """
        Return the run-length encoding of `s`: each maximal run of one repeated character
        becomes that character followed by the length of the run, in decimal. The empty
        string encodes to the empty string.
        """,
        [(("aaabcc",), "a3b1c2"), (("",), ""), (("z",), "z1")],
        [
            (("aaaaaaaaaaaa",), "a12"),
            (("abab",), "a1b1a1b1"),
            (("  x",), " 2x1"),
            (("AAaa",), "A2a2"),
            (("111",), "13"),
            (("abcdd",), "a1b1c1d2"),
            (("xxyyyzzzz",), "x2y3z4"),
            (("\n\n",), "\n2"),
        ],
    ),
    task(
        decode_runs,
        """
        Decode a run-length encoding: `s` is a sequence of pairs, each an ASCII letter followed
        by a positive decimal count that may have several digits. Return the expanded string.
        """,
        [(("a3b1",), "aaab"), (("x2y10",), "xx" + "y" * 10), (("",), "")],
        [
            (("a1",), "a"),
            (("q12",), "q" * 12),
            (("a1b2c3",), "abbccc"),
            (("Z3z3",), "ZZZzzz"),
            (("m100",), "m" * 100),
            (("a2a2",), "aaaa"),
            (("k1l1m1",), "klm"),
        ],
    ),
    task(
        is_balanced,
        """
        Return True if every bracket in `s` - (), [] and {} - is closed by the matching bracket
        in the right order, else False. Other characters are ignored.
        """,
        [(("(a[b]{c})",), True), (("(]",), False), (("",), True)],
        [
            (("((()))",), True),
            (("(()",), False),
            (("())",), False),
            (("{[()()]}",), True),
            (("{[(])}",), False),
            (("]",), False),
            (("x = f(a[0]) + {1: 2}",), True),
            (("[[[]]]]",), False),
            (("abc",), True),
        ],
    ),
    task(
        caesar_shift,
        """
        Shift every ASCII letter of `text` by `k` positions in the alphabet, wrapping around
        and keeping its case; `k` may be negative or larger than 26. Every other character
        (digits, punctuation, non-ASCII letters) stays as it is.
        """,
        [(("abc", 1), "bcd"), (("Hello, World!", 3), "Khoor, Zruog!"), (("xyz", 2), "zab")],
        [
            (("abc", -1), "zab"),
            (("ABC", 26), "ABC"),
            (("abc", 27), "bcd"),
            (("Zz", 1), "Aa"),
            (("123 ?", 5), "123 ?"),
            (("", 4), ""),
            (("Mixed Case", -27), "Lhwdc Bzrd"),
            (("hello", 52), "hello"),
            (("é a", 1), "é b"),
        ],
    ),
    task(
        longest_common_prefix,
        """
        Return the longest string that is a prefix of every word in `words` (the empty string
        if there is none or `words` is empty). Comparison is case-sensitive.
        """,
        [((["flower", "flow", "flight"],), "fl"), ((["dog", "racecar"],), ""), (([],), "")],
        [
            ((["same", "same"],), "same"),
            ((["a"],), "a"),
            ((["", "abc"],), ""),
            ((["interview", "internet", "interval"],), "inter"),
            ((["abc", "abcd", "ab"],), "ab"),
            ((["prefix", "prefixes", "prefixed"],), "prefix"),
            ((["Case", "case"],), ""),
        ],
    ),
    task(
        longest_palindromic_substring,
        """
        Return the longest contiguous substring of `s` that reads the same backwards. If
        several have the maximum length, return the one that starts first.
        """,
        [(("babad",), "bab"), (("cbbd",), "bb"), (("",), "")],
        [
            (("a",), "a"),
            (("abc",), "a"),
            (("racecar",), "racecar"),
            (("forgeeksskeegfor",), "geeksskeeg"),
            (("abacdfgdcaba",), "aba"),
            (("aaaa",), "aaaa"),
            (("xabbay",), "abba"),
            (("abcbaxyzzyx",), "xyzzyx"),
        ],
    ),
    task(
        roman_to_int,
        """
        Convert a Roman numeral between 1 and 3999 to an integer. The symbols are I=1, V=5,
        X=10, L=50, C=100, D=500, M=1000, with the subtractive forms IV, IX, XL, XC, CD, CM.
        """,
        [(("III",), 3), (("IX",), 9), (("MCMXCIV",), 1994)],
        [
            (("I",), 1),
            (("IV",), 4),
            (("XL",), 40),
            (("XC",), 90),
            (("CD",), 400),
            (("MMMCMXCIX",), 3999),
            (("LVIII",), 58),
            (("MMXXIV",), 2024),
            (("DCCCXC",), 890),
        ],
    ),
    task(
        title_case,
        """
        Capitalise the words of `s` (words are separated by single spaces): first letter upper
        case, the rest lower case. Words listed in `minor` (compared case-insensitively) are
        written all in lower case instead, except the first word of `s`, which is always
        capitalised.
        """,
        [
            (("the lord of the rings", ["of", "the"]), "The Lord of the Rings"),
            (("HELLO WORLD", []), "Hello World"),
            (("", ["a"]), ""),
        ],
        [
            (("a tale OF two cities", ["a", "of"]), "A Tale of Two Cities"),
            (("of mice and men", ["of", "and"]), "Of Mice and Men"),
            (("x", []), "X"),
            (("war AND peace", ["AND"]), "War and Peace"),
            (("in the end", ["in", "the"]), "In the End"),
            (("mIxEd", ["mixed"]), "Mixed"),
            (("one two", ["two"]), "One two"),
        ],
    ),
]
