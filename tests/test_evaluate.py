"""Holdout evaluation: metric definitions, the run record and ``jobs evaluate``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.evaluation import ranking_metrics_at_k
from implicit.nearest_neighbours import bm25_weight
from sqlalchemy import Engine, func, select

from db.models import ModelRun
from helpers import TwoGroups, seed_two_groups, small_settings
from jobs import model
from jobs.cli import main
from jobs.confidence import Weighting
from jobs.config import EvaluationSettings, ModelSettings
from jobs.errors import NothingToDoError
from jobs.evaluate import Holdout, evaluate, ranking_metrics
from jobs.run import run_once


def random_strengths(seed: int = 3) -> sp.csr_matrix:
    """A 60 x 40 matrix of star strengths 3-5 with about 25 % filled."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((60, 40)) < 0.25) * rng.integers(3, 6, (60, 40))
    matrix = sp.csr_matrix(dense.astype(np.float32))
    matrix.sort_indices()
    return matrix


def test_metrics_by_hand() -> None:
    # User 0 hides movies 1 and 4 and gets [1, 2, 3]. User 1 hides movie 0
    # and gets [0, 5, 6]. K is 3.
    test = sp.csr_matrix(
        (np.ones(3, dtype=np.float32), ([0, 0, 1], [1, 4, 0])), shape=(2, 10)
    )
    ids = np.array([[1, 2, 3], [0, 5, 6]])
    metrics = ranking_metrics(
        ids, np.ones_like(ids, dtype=bool), np.array([0, 1]), test
    )

    assert metrics.precision == pytest.approx(2 / (2 + 1))
    assert metrics.recall == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert metrics.map == pytest.approx((1 / 2 + 1) / 2)
    ideal_user_0 = 1 + 1 / np.log2(3)
    assert metrics.ndcg == pytest.approx((1 / ideal_user_0 + 1) / 2)
    assert metrics.coverage == pytest.approx(6 / 10)


def test_padding_is_never_a_hit() -> None:
    test = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 5), dtype=np.float32)
    ids = np.array([[3, 0]])
    valid = np.array([[True, False]])
    metrics = ranking_metrics(ids, valid, np.array([0]), test)
    assert metrics.precision == 0.0
    assert metrics.coverage == pytest.approx(1 / 5)


def test_metrics_agree_with_implicit() -> None:
    strengths = random_strengths()
    settings = EvaluationSettings(k=5)
    holdout = Holdout.split(strengths, settings)
    als = model.fit_als(
        holdout.train,
        factors=4,
        regularization=0.5,
        alpha=1.0,
        iterations=5,
        random_state=1,
    )
    ids = np.concatenate(
        [batch.ids for batch in model.recommend(als, holdout.users, holdout.train, 5)]
    )
    ours = ranking_metrics(
        ids, np.ones_like(ids, dtype=bool), holdout.users, holdout.test
    )
    theirs = ranking_metrics_at_k(
        als, holdout.train, holdout.test, K=5, show_progress=False
    )
    assert ours.precision == pytest.approx(theirs["precision"])
    assert ours.map == pytest.approx(theirs["map"])
    assert ours.ndcg == pytest.approx(theirs["ndcg"])


def test_split_hides_the_configured_share() -> None:
    strengths = random_strengths()
    holdout = Holdout.split(strengths, EvaluationSettings(test_fraction=0.2))
    assert holdout.train.nnz + holdout.test.nnz == strengths.nnz
    assert holdout.test.nnz == pytest.approx(
        0.2 * strengths.nnz, abs=0.05 * strengths.nnz
    )
    # No pair is in both halves.
    assert holdout.train.multiply(holdout.test).nnz == 0
    again = Holdout.split(strengths, EvaluationSettings(test_fraction=0.2))
    assert (again.test != holdout.test).nnz == 0


def test_scored_users_are_a_seeded_sample() -> None:
    strengths = random_strengths()
    everyone = Holdout.split(strengths, EvaluationSettings())
    sampled = Holdout.split(strengths, EvaluationSettings(max_users=5))
    again = Holdout.split(strengths, EvaluationSettings(max_users=5))

    assert len(everyone.users) > 5
    assert len(sampled.users) == 5
    assert set(sampled.users) <= set(everyone.users)
    assert sampled.users.tolist() == sorted(again.users.tolist())
    # The split itself does not depend on the sample.
    assert (sampled.test != everyone.test).nnz == 0


def test_one_positive_is_too_few() -> None:
    single = sp.csr_matrix(([4.0], ([0], [0])), shape=(1, 1), dtype=np.float32)
    with pytest.raises(NothingToDoError, match="too few positives"):
        evaluate(single, ModelSettings(factors=2), EvaluationSettings())


@pytest.mark.parametrize("scheme", ["rating", "binary", "bm25"])
def test_weighting_schemes(scheme: str) -> None:
    strengths = random_strengths()
    weighted = Weighting.of(scheme, strengths).apply(strengths)
    assert (weighted != 0).nnz == strengths.nnz
    if scheme == "rating":
        expected = strengths
    elif scheme == "binary":
        expected = (strengths != 0).astype(np.float32)
    else:
        expected = bm25_weight(strengths, K1=100, B=0.8).tocsr()
    np.testing.assert_allclose(weighted.toarray(), expected.toarray(), rtol=1e-5)


def test_bm25_weights_new_rows_with_the_stored_figures() -> None:
    strengths = random_strengths()
    weighting = Weighting.of("bm25", strengths)
    whole = weighting.apply(strengths)
    rows = weighting.apply(strengths[[5, 17]])
    np.testing.assert_allclose(rows.toarray(), whole[[5, 17]].toarray(), rtol=1e-6)


def run_record(engine: Engine, run_id: int) -> dict[str, object]:
    with engine.connect() as connection:
        table = ModelRun.__table__
        row = connection.execute(select(table).where(table.c.run_id == run_id))
        return dict(row.mappings().one())


def test_run_records_holdout_metrics(engine: Engine) -> None:
    seed_two_groups(engine)
    summary = run_once(engine, small_settings(str(engine.url)))
    run = run_record(engine, summary.run_id)

    assert run["eval_k"] == 10
    # Each of the 240 positives is hidden with probability 0.2, by seeded draws.
    assert run["eval_held_out"] == 43
    assert 20 <= run["eval_users"] <= 30
    for prefix in ("eval", "popular"):
        for name in ("precision", "recall", "map", "ndcg", "coverage"):
            assert 0.0 <= run[f"{prefix}_{name}"] <= 1.0
    # Both taste groups are equally popular, so only the model can tell a
    # user's group from their training positives.
    assert run["eval_ndcg"] > run["popular_ndcg"] + 0.1
    assert run["metrics"]["model"]["ndcg"] == run["eval_ndcg"]
    assert "evaluate" in run["timings"]


def test_evaluation_can_be_turned_off(engine: Engine) -> None:
    seed_two_groups(engine)
    settings = dataclasses.replace(
        small_settings(str(engine.url)), evaluation=EvaluationSettings(enabled=False)
    )
    run = run_record(engine, run_once(engine, settings).run_id)
    assert run["eval_ndcg"] is None
    assert run["popular_ndcg"] is None
    assert "evaluate" not in run["timings"]


def test_run_publishes_when_too_few_to_evaluate(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO movies (movie_id, title, genres) VALUES (1, 'Only (2000)', '')"
        )
        connection.exec_driver_sql("INSERT INTO users (user_id) VALUES (1)")
        connection.exec_driver_sql(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "VALUES (1, 1, 5.0, 0)"
        )
    summary = run_once(engine, small_settings(str(engine.url)))
    run = run_record(engine, summary.run_id)
    assert run["status"] == "succeeded"
    assert run["eval_ndcg"] is None


def test_evaluate_command_prints_metrics_and_writes_nothing(
    engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    two_groups: TwoGroups = seed_two_groups(engine)
    assert two_groups.n_positive == 240
    url = engine.url.render_as_string(hide_password=False)
    config = f"{tmp_path}/settings.toml"
    with open(config, "w") as stream:
        stream.write("[model]\nfactors = 4\nregularization = 0.1\n")

    status = main(["--database-url", url, "--config", config, "evaluate", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["k"] == 10
    assert document["n_held_out"] == 43
    assert document["model"]["ndcg"] > document["popular"]["ndcg"]

    status = main(["--database-url", url, "--config", config, "evaluate"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("holdout: 43 hidden positives (20%, seed 42)")
    ndcg_line = next(line for line in lines if line.strip().startswith("ndcg@10"))
    assert float(ndcg_line.split()[1]) == pytest.approx(
        document["model"]["ndcg"], abs=1e-4
    )
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(ModelRun)).scalar() == 0
        )
