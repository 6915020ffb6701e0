"""End to end on the real MovieLens 1M files, on SQLite and PostgreSQL.

The expected figures are the exact ones GroupLens' data has: 1,000,209
ratings from 6,040 users, 836,478 of them 3 stars or more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from conftest import new_migrated_database
from db.engine import make_engine
from jobs.config import DatabaseSettings, Settings
from jobs.demo import DEMO_FAVORITES, DEMO_SIMILAR_TO, DEMO_USER
from jobs.favorites import add_favorites
from jobs.ingest import IngestResult, ingest
from jobs.run import RunSummary, run_once

pytestmark = pytest.mark.movielens


@dataclass
class RealRuns:
    engine: Engine
    ingest: IngestResult
    first: RunSummary
    second: RunSummary
    demo_user_id: int


@pytest.fixture(scope="module")
def real_runs(
    backend: str,
    movielens_dir: Path,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RealRuns]:
    url = new_migrated_database(backend, request, tmp_path_factory.mktemp("ml1m"))
    engine = make_engine(url)
    settings = Settings(database=DatabaseSettings(url=url))
    ingested = ingest(engine, movielens_dir / "ml-1m")
    first = run_once(engine, settings)
    added = add_favorites(engine, DEMO_USER, DEMO_FAVORITES)
    second = run_once(engine, settings)
    yield RealRuns(engine, ingested, first, second, added.user_id)
    engine.dispose()


def scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar_one()


def test_ingest_stores_every_rating(real_runs: RealRuns) -> None:
    assert real_runs.ingest.ratings_read == 1_000_209
    assert scalar(real_runs.engine, "SELECT COUNT(*) FROM ratings") == 1_000_209
    assert scalar(real_runs.engine, "SELECT COUNT(*) FROM movies") == 3_883


def test_ingest_star_counts(real_runs: RealRuns) -> None:
    with real_runs.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT rating, COUNT(*) FROM ratings GROUP BY rating ORDER BY rating")
        ).all()
    assert [(int(r), n) for r, n in rows] == [
        (1, 56_174),
        (2, 107_557),
        (3, 261_197),
        (4, 348_971),
        (5, 226_310),
    ]


def test_first_run_counts(real_runs: RealRuns) -> None:
    counts = real_runs.first.counts
    assert counts["n_users"] == 6_040
    assert counts["n_ratings"] == 1_000_209
    assert counts["n_interactions"] == 836_478
    assert counts["n_movies"] == 3_628
    assert counts["n_favorites"] == 0


def test_second_run_counts_demo_user(real_runs: RealRuns) -> None:
    counts = real_runs.second.counts
    assert counts["n_users"] == 6_041
    assert counts["n_favorites"] == 5
    assert counts["n_interactions"] == 836_478 + 5


def test_no_list_contains_seen_movie(real_runs: RealRuns) -> None:
    seen_in_lists = scalar(
        real_runs.engine,
        "SELECT COUNT(*) FROM recommendations AS r "
        "WHERE EXISTS (SELECT 1 FROM ratings AS s "
        "  WHERE s.user_id = r.user_id AND s.movie_id = r.movie_id) "
        "OR EXISTS (SELECT 1 FROM favorites AS f "
        "  WHERE f.user_id = r.user_id AND f.movie_id = r.movie_id)",
    )
    assert seen_in_lists == 0


def test_every_user_has_full_list(real_runs: RealRuns) -> None:
    with real_runs.engine.connect() as connection:
        sizes = connection.execute(
            text(
                "SELECT COUNT(*), MIN(rank), MAX(rank) FROM recommendations "
                "GROUP BY user_id"
            )
        ).all()
    assert len(sizes) == 6_041
    assert {tuple(size) for size in sizes} == {(20, 1, 20)}


def test_demo_list_excludes_favorites(real_runs: RealRuns) -> None:
    with real_runs.engine.connect() as connection:
        listed = connection.execute(
            text(
                "SELECT m.title, r.source FROM recommendations AS r "
                "JOIN movies AS m ON m.movie_id = r.movie_id WHERE r.user_id = :id"
            ),
            {"id": real_runs.demo_user_id},
        ).all()
    assert len(listed) == 20
    assert not {title for title, _ in listed} & set(DEMO_FAVORITES)
    assert {source for _, source in listed} == {"als"}


def test_jaws_not_similar_to_itself(real_runs: RealRuns) -> None:
    with real_runs.engine.connect() as connection:
        similar = connection.execute(
            text(
                "SELECT s.similar_movie_id, m.movie_id FROM similar_movies AS s "
                "JOIN movies AS m ON m.movie_id = s.movie_id WHERE m.title = :title"
            ),
            {"title": DEMO_SIMILAR_TO},
        ).all()
    assert len(similar) == 15
    assert all(similar_id != movie_id for similar_id, movie_id in similar)


def test_second_run_replaces_first(real_runs: RealRuns) -> None:
    second = real_runs.second.run_id
    for view in ("recommendations", "similar_movies"):
        run_ids = scalar(real_runs.engine, f"SELECT COUNT(DISTINCT run_id) FROM {view}")
        assert run_ids == 1
        assert scalar(real_runs.engine, f"SELECT MIN(run_id) FROM {view}") == second
    assert second > real_runs.first.run_id


def test_first_run_holdout_metrics(real_runs: RealRuns) -> None:
    with real_runs.engine.connect() as connection:
        run = (
            connection.execute(
                text("SELECT * FROM model_runs WHERE run_id = :id"),
                {"id": real_runs.first.run_id},
            )
            .mappings()
            .one()
        )
    # The seeded split of the 836,478 positives.
    assert run["eval_held_out"] == 167_427
    assert run["eval_users"] == 6_028
    assert run["eval_k"] == 10
    # The popularity baseline's published reference on this protocol is 0.187.
    assert run["popular_ndcg"] == pytest.approx(0.1872, abs=5e-4)
    assert run["popular_precision"] == pytest.approx(0.1933, abs=5e-4)
    # The shipped settings measured 0.393; the goal is at least 0.38.
    assert run["eval_ndcg"] >= 0.39
    assert run["eval_precision"] > 2 * run["popular_precision"] - 0.01
    assert run["eval_coverage"] > 10 * run["popular_coverage"]


def test_every_model_pick_cites_an_own_positive(real_runs: RealRuns) -> None:
    uncited = scalar(
        real_runs.engine,
        "SELECT COUNT(*) FROM recommendations AS r WHERE r.source = 'als' AND NOT ("
        "  EXISTS (SELECT 1 FROM ratings AS s WHERE s.user_id = r.user_id "
        "    AND s.movie_id = r.because_movie_id AND s.rating >= 3) "
        "  OR EXISTS (SELECT 1 FROM favorites AS f WHERE f.user_id = r.user_id "
        "    AND f.movie_id = r.because_movie_id))",
    )
    assert uncited == 0
    with real_runs.engine.connect() as connection:
        cited = connection.execute(
            text(
                "SELECT DISTINCT m.title FROM recommendations AS r "
                "JOIN movies AS m ON m.movie_id = r.because_movie_id "
                "WHERE r.user_id = :id"
            ),
            {"id": real_runs.demo_user_id},
        ).scalars()
        assert set(cited) <= set(DEMO_FAVORITES)
