"""Tool-use templates over CSV and JSON data files."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict

import numpy as np

from envkit.environments.tool_tasks._model import WORDS, ToolTask, pick, template

REGIONS = ["north", "south", "east", "west", "central"]
PRODUCTS = ["anvil", "bolt", "crate", "drill", "easel", "flask", "gear", "hinge"]


def _sales(rng: np.random.Generator) -> tuple[list[dict[str, object]], str]:
    n = int(rng.integers(25, 60))
    rows = [
        {
            "id": i + 1,
            "region": pick(rng, REGIONS),
            "product": pick(rng, PRODUCTS),
            "units": int(rng.integers(1, 200)),
            "price": round(float(rng.integers(100, 5000)) / 100, 2),
        }
        for i in range(n)
    ]
    lines = ["id,region,product,units,price"] + [
        f"{r['id']},{r['region']},{r['product']},{r['units']},{r['price']:.2f}" for r in rows
    ]
    return rows, "\n".join(lines) + "\n"


@template
def csv_column_mean(rng: np.random.Generator) -> ToolTask:
    rows, text = _sales(rng)
    col = pick(rng, ["units", "price"])
    mean = sum(float(r[col]) for r in rows) / len(rows)  # type: ignore[arg-type]
    return ToolTask(
        "csv_column_mean",
        f"What is the mean of the `{col}` column of data/sales.csv? Round it to 2 decimals.",
        {"data/sales.csv": text},
        round(mean, 2),
        "float",
    )


@template
def csv_column_median(rng: np.random.Generator) -> ToolTask:
    rows, text = _sales(rng)
    median = statistics.median(float(r["units"]) for r in rows)  # type: ignore[arg-type]
    return ToolTask(
        "csv_column_median",
        "What is the median of the `units` column of data/sales.csv? Round it to 2 decimals.",
        {"data/sales.csv": text},
        round(median, 2),
        "float",
    )


@template
def csv_filter_count(rng: np.random.Generator) -> ToolTask:
    rows, text = _sales(rng)
    threshold = int(rng.integers(40, 160))
    region = pick(rng, REGIONS)
    count = sum(1 for r in rows if r["region"] == region and int(r["units"]) > threshold)  # type: ignore[call-overload]
    return ToolTask(
        "csv_filter_count",
        f"How many rows of data/sales.csv have region `{region}` and more than {threshold} "
        "units? Answer with the number.",
        {"data/sales.csv": text},
        count,
        "int",
    )


@template
def csv_top_revenue_product(rng: np.random.Generator) -> ToolTask:
    rows, text = _sales(rng)
    revenue: dict[str, float] = defaultdict(float)
    for r in rows:
        revenue[str(r["product"])] += int(r["units"]) * float(r["price"])  # type: ignore[call-overload,arg-type]
    best = sorted(revenue.items(), key=lambda kv: (-round(kv[1], 2), kv[0]))[0][0]
    return ToolTask(
        "csv_top_revenue_product",
        "In data/sales.csv the revenue of a row is units * price. Which product has the highest "
        "total revenue? Answer with the product name.",
        {"data/sales.csv": text},
        best,
        "str",
    )


@template
def csv_group_largest(rng: np.random.Generator) -> ToolTask:
    rows, text = _sales(rng)
    totals: Counter[str] = Counter()
    for r in rows:
        totals[str(r["region"])] += int(r["units"])  # type: ignore[call-overload]
    best = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return ToolTask(
        "csv_group_largest",
        "Which region sold the most units in total in data/sales.csv? Answer with the region name.",
        {"data/sales.csv": text},
        best,
        "str",
    )


@template
def csv_distinct_count(rng: np.random.Generator) -> ToolTask:
    n = int(rng.integers(30, 80))
    names = [f"{pick(rng, WORDS)}_{int(rng.integers(1, 15))}" for _ in range(n)]
    lines = ["customer,amount"] + [f"{c},{int(rng.integers(1, 999))}" for c in names]
    return ToolTask(
        "csv_distinct_count",
        "How many distinct customers appear in data/orders.csv? Answer with the number.",
        {"data/orders.csv": "\n".join(lines) + "\n"},
        len(set(names)),
        "int",
    )


def _orders(rng: np.random.Generator) -> list[dict[str, object]]:
    statuses = ["pending", "shipped", "delivered", "cancelled"]
    return [
        {
            "order": f"A{int(rng.integers(10000, 99999))}",
            "status": pick(rng, statuses),
            "lines": [
                {"sku": pick(rng, PRODUCTS), "amount": int(rng.integers(1, 500))}
                for _ in range(int(rng.integers(1, 4)))
            ],
        }
        for _ in range(int(rng.integers(15, 40)))
    ]


@template
def json_nested_sum(rng: np.random.Generator) -> ToolTask:
    orders = _orders(rng)
    status = pick(rng, ["pending", "shipped", "delivered"])
    total = sum(
        int(line["amount"])  # type: ignore[index,call-overload]
        for o in orders
        if o["status"] == status
        for line in o["lines"]  # type: ignore[attr-defined]
    )
    return ToolTask(
        "json_nested_sum",
        f"data/orders.json is a list of orders. What is the sum of the `amount` of every line "
        f"of the orders whose status is `{status}`? Answer with the number.",
        {"data/orders.json": json.dumps({"orders": orders}, indent=1)},
        total,
        "int",
    )


@template
def json_count_status(rng: np.random.Generator) -> ToolTask:
    orders = _orders(rng)
    status = pick(rng, ["pending", "shipped", "delivered", "cancelled"])
    count = sum(1 for o in orders if o["status"] == status)
    return ToolTask(
        "json_count_status",
        f"How many orders in data/orders.json have status `{status}`? Answer with the number.",
        {"data/orders.json": json.dumps({"orders": orders})},
        count,
        "int",
    )
