"""Coding tasks about lists. Each function is the reference solution of its task."""

from __future__ import annotations

from envkit.environments.coding_tasks._model import CodingTask, task


def second_largest(nums: list[int]) -> int | None:
    distinct = sorted(set(nums))
    return distinct[-2] if len(distinct) >= 2 else None


def rotate_left(items: list[int], k: int) -> list[int]:
    if not items:
        return []
    k %= len(items)
    return items[k:] + items[:k]


def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def max_subarray_sum(nums: list[int]) -> int:
    best = current = nums[0]
    for x in nums[1:]:
        current = max(x, current + x)
        best = max(best, current)
    return best


def moving_average(nums: list[float], window: int) -> list[float]:
    return [sum(nums[i : i + window]) / window for i in range(len(nums) - window + 1)]


def longest_increasing_run(nums: list[int]) -> int:
    best = run = 0
    for i, x in enumerate(nums):
        run = run + 1 if i > 0 and x > nums[i - 1] else 1
        best = max(best, run)
    return best


def pair_with_sum(nums: list[int], target: int) -> list[int]:
    first_index: dict[int, int] = {}
    for j, x in enumerate(nums):
        if target - x in first_index:
            return [first_index[target - x], j]
        first_index.setdefault(x, j)
    return []


def chunk_sums(nums: list[int], size: int) -> list[int]:
    return [sum(nums[i : i + size]) for i in range(0, len(nums), size)]


TASKS: list[CodingTask] = [
    task(
        second_largest,
        """
        Return the second largest distinct value in `nums`, or None when `nums` has fewer than
        two distinct values.
        """,
        [(([3, 1, 4, 1, 5],), 4), (([7, 7, 7],), None), (([],), None)],
        [
            (([1, 2],), 1),
            (([2, 1],), 1),
            (([-5, -1, -3],), -3),
            (([10, 10, 9],), 9),
            (([5],), None),
            (([0, 0, 1, 1],), 0),
            (([100, -100, 50, 50],), 50),
            (([4, 4, 4, 3, 3],), 3),
        ],
    ),
    task(
        rotate_left,
        """
        Return `items` rotated left by `k` positions: the first k elements move to the end.
        `k` may be larger than the length of the list, or negative (rotating right). An empty
        list stays empty.
        """,
        [(([1, 2, 3, 4, 5], 2), [3, 4, 5, 1, 2]), (([1, 2, 3], 0), [1, 2, 3]), (([], 3), [])],
        [
            (([1, 2, 3], 3), [1, 2, 3]),
            (([1, 2, 3], 4), [2, 3, 1]),
            (([1, 2, 3], -1), [3, 1, 2]),
            (([9], 100), [9]),
            (([1, 2, 3, 4], -6), [3, 4, 1, 2]),
            (([5, 6], 1), [6, 5]),
            (([1, 2, 3, 4, 5], 7), [3, 4, 5, 1, 2]),
        ],
    ),
    task(
        merge_intervals,
        """
        Merge overlapping closed intervals [start, end] (intervals that only share an endpoint
        overlap too) and return the merged intervals sorted by start.
        """,
        [
            (([[1, 3], [2, 6], [8, 10], [15, 18]],), [[1, 6], [8, 10], [15, 18]]),
            (([[1, 4], [4, 5]],), [[1, 5]]),
            (([],), []),
        ],
        [
            (([[5, 6], [1, 2]],), [[1, 2], [5, 6]]),
            (([[1, 10], [2, 3], [4, 5]],), [[1, 10]]),
            (([[1, 2], [3, 4]],), [[1, 2], [3, 4]]),
            (([[2, 3], [1, 2]],), [[1, 3]]),
            (([[0, 0]],), [[0, 0]]),
            (([[-5, -1], [-2, 2], [3, 3]],), [[-5, 2], [3, 3]]),
            (([[1, 4], [0, 4]],), [[0, 4]]),
            (([[6, 8], [1, 9], [2, 4], [4, 7]],), [[1, 9]]),
        ],
    ),
    task(
        max_subarray_sum,
        """
        Return the largest sum of a non-empty contiguous subarray of `nums` (`nums` has at least
        one element).
        """,
        [(([-2, 1, -3, 4, -1, 2, 1, -5, 4],), 6), (([1],), 1), (([-3, -1, -2],), -1)],
        [
            (([5, 4, -1, 7, 8],), 23),
            (([-1],), -1),
            (([0, 0, 0],), 0),
            (([2, -1, 2],), 3),
            (([-2, -3, 4, -1, -2, 1, 5, -3],), 7),
            (([1, 2, 3, -100, 4, 5],), 9),
            (([-5, 10, -5, 10, -5],), 15),
            (([3, -4, 5, -1, 2],), 6),
        ],
    ),
    task(
        moving_average,
        """
        Return the average of every window of `window` consecutive values of `nums`, in order.
        Return an empty list when `nums` is shorter than the window.
        """,
        [(([1, 2, 3, 4], 2), [1.5, 2.5, 3.5]), (([5], 1), [5.0]), (([1, 2], 3), [])],
        [
            (([1, 1, 1, 1], 4), [1.0]),
            (([0, 10, 20, 30, 40], 3), [10.0, 20.0, 30.0]),
            (([2.5, 3.5], 1), [2.5, 3.5]),
            (([-1, 1, -1, 1], 2), [0.0, 0.0, 0.0]),
            (([1, 2, 4], 2), [1.5, 3.0]),
            (([], 1), []),
            (([0.1, 0.2, 0.3], 3), [0.2]),
        ],
    ),
    task(
        longest_increasing_run,
        """
        Return the length of the longest run of consecutive elements of `nums` in which every
        element is strictly greater than the one before it (0 for an empty list).
        """,
        [(([1, 2, 3, 2, 3],), 3), (([5, 4, 3],), 1), (([],), 0)],
        [
            (([1],), 1),
            (([1, 1, 1],), 1),
            (([1, 2, 2, 3, 4, 5],), 4),
            (([-3, -2, -1, 0],), 4),
            (([3, 1, 2, 3, 4, 0, 1],), 4),
            (([10, 20, 10, 20, 30],), 3),
            (([2, 1, 2, 1, 2],), 2),
        ],
    ),
    task(
        pair_with_sum,
        """
        Find indices i < j such that nums[i] + nums[j] == target. Among all such pairs return
        the one with the smallest j, and for that j the smallest i, as [i, j]. Return [] when
        there is no such pair.
        """,
        [(([2, 7, 11, 15], 9), [0, 1]), (([3, 2, 4], 6), [1, 2]), (([1, 2], 7), [])],
        [
            (([3, 3], 6), [0, 1]),
            (([1, 5, 1, 5], 6), [0, 1]),
            (([0, 4, 3, 0], 0), [0, 3]),
            (([-1, -2, -3, -4, -5], -8), [2, 4]),
            (([5], 10), []),
            (([], 0), []),
            (([1, 2, 3, 4, 5], 9), [3, 4]),
            (([2, 2, 2], 4), [0, 1]),
            (([1, 3, 2, 2], 4), [0, 1]),
        ],
    ),
    task(
        chunk_sums,
        """
        Split `nums` into consecutive chunks of `size` elements (the last chunk may be shorter)
        and return the list of the chunks' sums.
        """,
        [(([1, 2, 3, 4, 5], 2), [3, 7, 5]), (([], 3), []), (([4, 4], 5), [8])],
        [
            (([1, 2, 3], 1), [1, 2, 3]),
            (([1, 2, 3], 3), [6]),
            (([-1, 1, -1, 1], 2), [0, 0]),
            (([10, 20, 30, 40], 3), [60, 40]),
            (([0], 1), [0]),
            (([5, 5, 5, 5, 5, 5, 5], 2), [10, 10, 10, 5]),
        ],
    ),
]
