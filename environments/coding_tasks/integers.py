"""Coding tasks about integers. Each function is the reference solution of its task."""

from __future__ import annotations

from envkit.environments.coding_tasks._model import CodingTask, task


def digital_root(n: int) -> int:
    while n >= 10:
        n = sum(int(d) for d in str(n))
    return n


def count_primes_below(n: int) -> int:
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    for p in range(2, int(n**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, n, p)))
    return sum(sieve)


def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def gcd_of_list(nums: list[int]) -> int:
    from math import gcd

    g = 0
    for x in nums:
        g = gcd(g, x)
    return g


def to_base(n: int, base: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if n == 0:
        return "0"
    sign, n = ("-", -n) if n < 0 else ("", n)
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(digits[r])
    return sign + "".join(reversed(out))


def sum_of_divisors(n: int) -> int:
    total = 0
    d = 1
    while d * d <= n:
        if n % d == 0:
            total += d
            if d * d != n:
                total += n // d
        d += 1
    return total - n


def binary_gap(n: int) -> int:
    bits = bin(n)[2:].strip("0")
    return max((len(run) for run in bits.split("1")), default=0)


def nth_fibonacci_mod(n: int, m: int) -> int:
    def fib_pair(k: int) -> tuple[int, int]:
        # (F(k), F(k+1)) mod m by fast doubling
        if k == 0:
            return 0, 1 % m
        a, b = fib_pair(k // 2)
        c = a * ((2 * b - a) % m) % m
        d = (a * a + b * b) % m
        return (d, (c + d) % m) if k % 2 else (c, d)

    return fib_pair(n)[0] % m


def _fib_mod_slow(n: int, m: int) -> int:
    """An independent O(n) check for the expected values below (small n only)."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a % m


TASKS: list[CodingTask] = [
    task(
        digital_root,
        """
        Repeatedly replace the non-negative integer `n` by the sum of its decimal digits until a
        single digit remains, and return that digit.
        """,
        [((16,), 7), ((942,), 6), ((0,), 0)],
        [
            ((9,), 9),
            ((10,), 1),
            ((99,), 9),
            ((123456789,), 9),
            ((38,), 2),
            ((1000000,), 1),
            ((493193,), 2),
            ((7,), 7),
        ],
    ),
    task(
        count_primes_below,
        """
        Return how many prime numbers are strictly less than `n` (n >= 0). It must handle
        n = 100000 well within a second.
        """,
        [((10,), 4), ((2,), 0), ((0,), 0)],
        [
            ((3,), 1),
            ((1,), 0),
            ((20,), 8),
            ((100,), 25),
            ((1000,), 168),
            ((11,), 4),
            ((12,), 5),
            ((100000,), 9592),
        ],
    ),
    task(
        collatz_steps,
        """
        Starting from the positive integer `n`, repeatedly halve it when it is even or replace
        it by 3n + 1 when it is odd. Return the number of steps needed to reach 1.
        """,
        [((1,), 0), ((6,), 8), ((7,), 16)],
        [
            ((2,), 1),
            ((3,), 7),
            ((27,), 111),
            ((16,), 4),
            ((97,), 118),
            ((12,), 9),
            ((19,), 20),
        ],
    ),
    task(
        gcd_of_list,
        """
        Return the greatest common divisor of all the integers in `nums`, which may be negative
        or zero. The result is never negative; the gcd of an empty list or of zeros only is 0.
        """,
        [(([12, 18, 24],), 6), (([7],), 7), (([],), 0)],
        [
            (([0, 0],), 0),
            (([0, 5],), 5),
            (([-4, 6],), 2),
            (([17, 34, 51],), 17),
            (([9, 28],), 1),
            (([-7],), 7),
            (([100, 75, 50, 25],), 25),
            (([2**20, 3 * 2**10],), 1024),
        ],
    ),
    task(
        to_base,
        """
        Write the integer `n` in base `base` (2 to 36) with the digits 0-9 followed by the
        upper-case letters A-Z. Negative numbers get a leading '-'; zero is '0'.
        """,
        [((10, 2), "1010"), ((255, 16), "FF"), ((0, 7), "0")],
        [
            ((-10, 2), "-1010"),
            ((35, 36), "Z"),
            ((36, 36), "10"),
            ((1, 2), "1"),
            ((8, 8), "10"),
            ((123456789, 36), "21I3V9"),
            ((-255, 16), "-FF"),
            ((100, 10), "100"),
            ((5, 3), "12"),
        ],
    ),
    task(
        sum_of_divisors,
        """
        Return the sum of the proper divisors of the positive integer `n`: all its positive
        divisors except `n` itself.
        """,
        [((6,), 6), ((12,), 16), ((1,), 0)],
        [
            ((2,), 1),
            ((28,), 28),
            ((220,), 284),
            ((284,), 220),
            ((97,), 1),
            ((100,), 117),
            ((36,), 55),
            ((496,), 496),
        ],
    ),
    task(
        binary_gap,
        """
        Return the length of the longest run of 0 bits in the binary representation of the
        positive integer `n` that has a 1 bit on both sides (0 when there is none).
        """,
        [((9,), 2), ((20,), 1), ((15,), 0)],
        [
            ((1,), 0),
            ((529,), 4),
            ((1041,), 5),
            ((32,), 0),
            ((5,), 1),
            ((6,), 0),
            ((2**31 + 1,), 30),
            ((328,), 2),
        ],
    ),
    task(
        nth_fibonacci_mod,
        """
        Return F(n) mod m, where F(0) = 0, F(1) = 1 and F(k) = F(k-1) + F(k-2). `n` can be as
        large as 10**18, so looping n times is far too slow; m >= 1.
        """,
        [((10, 1000), 55), ((0, 7), 0), ((1, 1), 0)],
        [
            ((2, 10), 1),
            ((50, 10**9), 586269025),
            ((100, 10**9 + 7), _fib_mod_slow(100, 10**9 + 7)),
            ((10**18, 10), _fib_mod_slow(40, 10)),  # Pisano period of 10 is 60
            ((10**18, 1000), _fib_mod_slow(1000, 1000)),  # period 1500; 10**18 = 1000 (mod 1500)
            ((123456789, 1), 0),
            ((90, 2**64), 2880067194370816120),
        ],
    ),
]
