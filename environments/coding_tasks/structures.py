"""Coding tasks about dicts, nested lists and grids. Each function is the reference solution."""

from __future__ import annotations

from envkit.environments.coding_tasks._model import CodingTask, task


def word_frequencies(text: str) -> dict[str, int]:
    import re

    counts: dict[str, int] = {}
    for word in re.findall(r"[A-Za-z]+", text):
        counts[word.lower()] = counts.get(word.lower(), 0) + 1
    return counts


def invert_dict(d: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in d.items():
        out.setdefault(value, []).append(key)
    return {value: sorted(keys) for value, keys in out.items()}


def flatten(nested: list) -> list:
    out = []
    stack = [iter(nested)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def group_anagrams(words: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault("".join(sorted(w)), []).append(w)
    return sorted(sorted(g) for g in groups.values())


def top_k_frequent(nums: list[int], k: int) -> list[int]:
    from collections import Counter

    counts = Counter(nums)
    return sorted(counts, key=lambda x: (-counts[x], x))[:k]


def transpose(matrix: list[list[int]]) -> list[list[int]]:
    return [list(col) for col in zip(*matrix, strict=True)]


def spiral_order(matrix: list[list[int]]) -> list[int]:
    out = []
    rows = [list(r) for r in matrix]
    while rows:
        out.extend(rows.pop(0))
        rows = [list(r) for r in zip(*rows, strict=True)][::-1]
    return out


def shortest_path_length(grid: list[str]) -> int:
    from collections import deque

    h, w = len(grid), len(grid[0])
    if grid[0][0] == "#" or grid[h - 1][w - 1] == "#":
        return -1
    dist = {(0, 0): 0}
    queue = deque([(0, 0)])
    while queue:
        r, c = queue.popleft()
        if (r, c) == (h - 1, w - 1):
            return dist[(r, c)]
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < h and 0 <= nc < w and grid[nr][nc] == "." and (nr, nc) not in dist:
                dist[(nr, nc)] = dist[(r, c)] + 1
                queue.append((nr, nc))
    return -1


def count_islands(grid: list[str]) -> int:
    seen = set()
    islands = 0
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            if cell != "1" or (r, c) in seen:
                continue
            islands += 1
            stack = [(r, c)]
            seen.add((r, c))
            while stack:
                y, x = stack.pop()
                for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if (
                        0 <= ny < len(grid)
                        and 0 <= nx < len(grid[ny])
                        and grid[ny][nx] == "1"
                        and (ny, nx) not in seen
                    ):
                        seen.add((ny, nx))
                        stack.append((ny, nx))
    return islands


def lru_misses(capacity: int, requests: list[int]) -> int:
    from collections import OrderedDict

    cache: OrderedDict[int, None] = OrderedDict()
    misses = 0
    for key in requests:
        if key in cache:
            cache.move_to_end(key)
            continue
        misses += 1
        if len(cache) >= capacity:
            cache.popitem(last=False)
        cache[key] = None
    return misses


def _nested(depth: int) -> list:
    out: list = [1]
    for _ in range(depth):
        out = [out]
    return out


_CHECKERBOARD = ["".join("1" if (i + j) % 2 == 0 else "0" for j in range(50)) for i in range(50)]

TASKS: list[CodingTask] = [
    task(
        word_frequencies,
        """
        Count the words of `text`. A word is a maximal run of ASCII letters (A-Z, a-z); words
        are compared case-insensitively. Return a dict from each word, in lower case, to the
        number of times it occurs.
        """,
        [
            (("The cat and the hat.",), {"the": 2, "cat": 1, "and": 1, "hat": 1}),
            (("",), {}),
            (("Go, go, GO!",), {"go": 3}),
        ],
        [
            (("a-b a_b",), {"a": 2, "b": 2}),
            (("123 456",), {}),
            (("it's",), {"it": 1, "s": 1}),
            (("Hello\nhello\tHELLO",), {"hello": 3}),
            (("x",), {"x": 1}),
            (("one two three two three three",), {"one": 1, "two": 2, "three": 3}),
            (("café",), {"caf": 1}),
        ],
    ),
    task(
        invert_dict,
        """
        Invert a mapping: return a dict from each value of `d` to the sorted list of the keys
        that map to it.
        """,
        [
            (({"a": "x", "b": "y", "c": "x"},), {"x": ["a", "c"], "y": ["b"]}),
            (({},), {}),
            (({"k": "k"},), {"k": ["k"]}),
        ],
        [
            (({"b": "1", "a": "1"},), {"1": ["a", "b"]}),
            (
                ({"one": "odd", "two": "even", "three": "odd", "four": "even"},),
                {"odd": ["one", "three"], "even": ["four", "two"]},
            ),
            (({"x": "a", "y": "b", "z": "c"},), {"a": ["x"], "b": ["y"], "c": ["z"]}),
            (({"B": "v", "a": "v", "C": "v"},), {"v": ["B", "C", "a"]}),
        ],
    ),
    task(
        flatten,
        """
        Flatten a list whose items are integers or (arbitrarily deeply) nested lists of the
        same kind into a flat list of its integers, in order. Nesting can be hundreds of levels
        deep.
        """,
        [(([1, [2, [3, 4]], 5],), [1, 2, 3, 4, 5]), (([],), []), (([[[]]],), [])],
        [
            (([1, 2, 3],), [1, 2, 3]),
            (([[1], [2], [3]],), [1, 2, 3]),
            (([[[[[7]]]]],), [7]),
            (([1, [], [2, []], 3],), [1, 2, 3]),
            (([[1, [2]], [[3], 4]],), [1, 2, 3, 4]),
            (([_nested(300), 2],), [1, 2]),
        ],
    ),
    task(
        group_anagrams,
        """
        Group the words that are anagrams of each other (the same letters the same number of
        times; case-sensitive). Sort the words inside each group, then order the groups by
        their first word.
        """,
        [
            (
                (["eat", "tea", "tan", "ate", "nat", "bat"],),
                [["ate", "eat", "tea"], ["bat"], ["nat", "tan"]],
            ),
            (([],), []),
            ((["a"],), [["a"]]),
        ],
        [
            ((["abc", "bca", "cab", "xyz"],), [["abc", "bca", "cab"], ["xyz"]]),
            ((["", ""],), [["", ""]]),
            ((["ab", "ba", "Ab"],), [["Ab"], ["ab", "ba"]]),
            (
                (["listen", "silent", "enlist", "google"],),
                [["enlist", "listen", "silent"], ["google"]],
            ),
            ((["a", "b", "a"],), [["a", "a"], ["b"]]),
            (
                (["stop", "pots", "tops", "opts", "post", "spot"],),
                [["opts", "post", "pots", "spot", "stop", "tops"]],
            ),
        ],
    ),
    task(
        top_k_frequent,
        """
        Return the `k` most frequent values of `nums`, the most frequent first; values with the
        same count are ordered from smallest to largest. With fewer than k distinct values,
        return them all.
        """,
        [(([1, 1, 1, 2, 2, 3], 2), [1, 2]), (([4, 4, 5, 5, 6], 2), [4, 5]), (([], 3), [])],
        [
            (([1], 1), [1]),
            (([3, 3, 1, 1, 2], 3), [1, 3, 2]),
            (([5, 5, 5, -1, -1, 7], 1), [5]),
            (([1, 2, 3], 5), [1, 2, 3]),
            (([2, 2, 1, 1, 1, 3, 3, 3], 2), [1, 3]),
            (([9, 8, 7, 9, 8, 9], 3), [9, 8, 7]),
            (([0, 0, 0, 0], 0), []),
        ],
    ),
    task(
        transpose,
        """
        Return the transpose of a rectangular matrix given as a list of rows. The transpose of
        an empty matrix is [].
        """,
        [(([[1, 2, 3], [4, 5, 6]],), [[1, 4], [2, 5], [3, 6]]), (([[7]],), [[7]]), (([],), [])],
        [
            (([[1], [2], [3]],), [[1, 2, 3]]),
            (([[1, 2, 3]],), [[1], [2], [3]]),
            (([[1, 2], [3, 4]],), [[1, 3], [2, 4]]),
            (([[0, 0], [0, 0], [1, 1]],), [[0, 0, 1], [0, 0, 1]]),
        ],
    ),
    task(
        spiral_order,
        """
        Return the elements of a rectangular matrix (a list of rows) in clockwise spiral order:
        start at the top-left corner and go right first.
        """,
        [
            (([[1, 2, 3], [4, 5, 6], [7, 8, 9]],), [1, 2, 3, 6, 9, 8, 7, 4, 5]),
            (([[1, 2], [3, 4]],), [1, 2, 4, 3]),
            (([],), []),
        ],
        [
            (([[1]],), [1]),
            (([[1, 2, 3, 4]],), [1, 2, 3, 4]),
            (([[1], [2], [3]],), [1, 2, 3]),
            (
                ([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]],),
                [1, 2, 3, 4, 8, 12, 11, 10, 9, 5, 6, 7],
            ),
            (([[1, 2], [3, 4], [5, 6]],), [1, 2, 4, 6, 5, 3]),
            (([[1, 2, 3], [4, 5, 6]],), [1, 2, 3, 6, 5, 4]),
        ],
    ),
    task(
        shortest_path_length,
        """
        `grid` is a non-empty list of equal-length strings of '.' (open) and '#' (wall). Return
        the number of moves (up, down, left or right) of a shortest path through open cells
        from the top-left cell to the bottom-right cell, or -1 if there is none (in particular
        when either corner is a wall).
        """,
        [(([".."],), 1), (([".#", ".."],), 2), (([".#", "#."],), -1)],
        [
            ((["."],), 0),
            ((["#"],), -1),
            ((["...", "...", "..."],), 4),
            (([".##", "..#", "#.."],), 4),
            ((["....", "###.", "....", ".###", "...."],), 13),
            ((["..", "..", "#."],), 3),
            (([".", "#", "."],), -1),
            ((["..#", "#..", "..."],), 4),
        ],
    ),
    task(
        count_islands,
        """
        `grid` is a list of equal-length strings of '1' (land) and '0' (water). Return the
        number of islands: groups of land cells connected horizontally or vertically (not
        diagonally). Grids can be large (60 x 60 all land is one island).
        """,
        [((["11000", "11000", "00100", "00011"],), 3), (([],), 0), ((["000"],), 0)],
        [
            ((["1"],), 1),
            ((["101", "010", "101"],), 5),
            ((["111", "101", "111"],), 1),
            ((["1111"],), 1),
            ((["10", "01"],), 2),
            ((["11011", "10001", "00100", "11111"],), 3),
            ((_CHECKERBOARD,), 1250),
            ((["1" * 60] * 60,), 1),
        ],
    ),
    task(
        lru_misses,
        """
        Simulate a least-recently-used cache that holds at most `capacity` keys (capacity >= 1).
        A requested key already in the cache is a hit and becomes the most recently used;
        otherwise it is a miss and is added, after evicting the least recently used key if the
        cache is full. Return the number of misses.
        """,
        [((2, [1, 2, 1, 3, 2]), 4), ((1, [1, 1, 1]), 1), ((3, []), 0)],
        [
            ((2, [1, 2, 3, 1, 2, 3]), 6),
            ((3, [1, 2, 3, 1, 2, 3]), 3),
            ((1, [1, 2, 1, 2]), 4),
            ((2, [1, 1, 2, 2, 1, 1]), 2),
            ((2, [1, 2, 1, 3, 1, 2]), 4),
            ((3, [4, 3, 2, 1, 4, 3, 5, 4, 3, 2, 1, 5]), 10),
            ((100, list(range(50)) * 2), 50),
        ],
    ),
]
