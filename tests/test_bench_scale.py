"""Pure helpers of bench/scale.py: sizes, /proc parsing, data reuse, growth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

# The bench scripts import each other as top-level modules, as they do when
# run as `python bench/scale.py`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import pipeline  # noqa: E402
import scale  # noqa: E402

CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
processor\t: 1
model name\t: AMD EPYC 7B13
"""
MEMINFO = """\
MemTotal:       24576000 kB
MemFree:         1048576 kB
MemAvailable:   12288000 kB
"""


def figures(
    backend: str, n_ratings: int, ingest: float, runs: list[tuple[float, float]]
) -> scale.BackendFigures:
    """Build figures with the given ingest seconds and (wall, total) per run."""
    result = scale.BackendFigures(backend, n_ratings)
    result.steps["ingest"] = pipeline.ProcessCost(ingest, 100.0)
    for wall, total in runs:
        cost = pipeline.ProcessCost(wall, 200.0)
        result.runs.append(scale.RunOnceFigures(cost, {"fit": 1.0, "total": total}))
    return result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000000", [1_000_000]),
        ("1M,10M,20M", [1_000_000, 10_000_000, 20_000_000]),
        ("300k, 100k", [100_000, 300_000]),
        ("100000,100k", [100_000]),
    ],
)
def test_parse_sizes_accepts(text: str, expected: list[int]) -> None:
    assert scale.parse_sizes(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-5", "1.5M", "10G", "M", "1M,,2M"])
def test_parse_sizes_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
        scale.parse_sizes(text)


def test_cpu_model_first_entry() -> None:
    assert scale.cpu_model(CPUINFO) == "AMD EPYC 7B13"


def test_cpu_model_missing() -> None:
    assert scale.cpu_model("processor\t: 0\n") == "unknown"


def test_meminfo_gib_converts_kib() -> None:
    assert scale.meminfo_gib(MEMINFO, "MemTotal") == pytest.approx(24576000 / 1024**2)
    assert scale.meminfo_gib(MEMINFO, "MemAvailable") == pytest.approx(
        12288000 / 1024**2
    )


def test_meminfo_gib_missing_key() -> None:
    assert scale.meminfo_gib(MEMINFO, "SwapTotal") is None


def test_marker_matches_same_generation() -> None:
    marker = {"n_ratings": 1000, "seed": 42, "numpy_version": "2.4.6"}
    assert scale.marker_matches(marker, 1000, 42, "2.4.6")


@pytest.mark.parametrize(
    ("n_ratings", "seed", "numpy_version"),
    [(2000, 42, "2.4.6"), (1000, 7, "2.4.6"), (1000, 42, "2.3.0")],
)
def test_marker_matches_rejects_change(
    n_ratings: int, seed: int, numpy_version: str
) -> None:
    marker = {"n_ratings": 1000, "seed": 42, "numpy_version": "2.4.6"}
    assert not scale.marker_matches(marker, n_ratings, seed, numpy_version)


def test_growth_rows_ratios_to_smallest() -> None:
    rows = scale.growth_rows(
        [
            figures("sqlite", 4_000, ingest=8.0, runs=[(6.0, 5.0)]),
            figures("sqlite", 1_000, ingest=2.0, runs=[(3.0, 1.0)]),
        ]
    )
    assert [row["n_ratings"] for row in rows] == [1_000, 4_000]
    large = rows[1]
    assert large["n_ratings_ratio"] == pytest.approx(4.0)
    assert large["ingest_seconds"] == pytest.approx(8.0)
    assert large["ingest_seconds_ratio"] == pytest.approx(4.0)
    assert large["run_once_seconds_ratio"] == pytest.approx(2.0)
    assert large["run_total_seconds_ratio"] == pytest.approx(5.0)
    assert rows[0]["ingest_seconds_ratio"] == pytest.approx(1.0)


def test_growth_rows_median_of_runs() -> None:
    rows = scale.growth_rows(
        [
            figures(
                "sqlite", 1_000, ingest=2.0, runs=[(3.0, 1.0), (9.0, 2.0), (4.0, 9.0)]
            )
        ]
    )
    assert rows[0]["run_once_seconds"] == pytest.approx(4.0)
    assert rows[0]["run_total_seconds"] == pytest.approx(2.0)


def test_growth_rows_per_backend() -> None:
    rows = scale.growth_rows(
        [
            figures("sqlite", 1_000, ingest=2.0, runs=[(3.0, 1.0)]),
            figures("postgresql", 1_000, ingest=1.0, runs=[(2.0, 1.0)]),
            figures("sqlite", 2_000, ingest=6.0, runs=[(3.0, 1.0)]),
            figures("postgresql", 2_000, ingest=4.0, runs=[(2.0, 1.0)]),
        ]
    )
    assert [(row["backend"], row["n_ratings"]) for row in rows] == [
        ("sqlite", 1_000),
        ("sqlite", 2_000),
        ("postgresql", 1_000),
        ("postgresql", 2_000),
    ]
    assert rows[1]["ingest_seconds_ratio"] == pytest.approx(3.0)
    assert rows[3]["ingest_seconds_ratio"] == pytest.approx(4.0)


def test_growth_rows_skip_failures() -> None:
    failed = figures("sqlite", 1_000, ingest=2.0, runs=[])
    failed.error = "python -m jobs -q run-once exited with status 1"
    rows = scale.growth_rows(
        [failed, figures("sqlite", 2_000, ingest=6.0, runs=[(3.0, 1.0)])]
    )
    assert len(rows) == 1
    assert rows[0]["n_ratings_ratio"] == pytest.approx(1.0)


def test_growth_rows_without_total_stage() -> None:
    result = figures("sqlite", 1_000, ingest=2.0, runs=[(3.0, 1.0)])
    result.runs[0].stages.pop("total")
    row = scale.growth_rows([result])[0]
    assert row["run_total_seconds"] is None
    assert row["run_total_seconds_ratio"] is None


def test_format_stages_keeps_order() -> None:
    stages = {"read": 0.5, "fit": 1.234, "total": 2.0}
    assert scale.format_stages(stages) == "read 0.50, fit 1.23, total 2.00"
