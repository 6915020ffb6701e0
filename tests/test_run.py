"""run-once on a real database: lists, rules, run records, publish and prune."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
from sqlalchemy import Engine, select, text

from db.models import ModelRun
from helpers import (
    GROUP_A_MOVIES,
    GROUP_A_USERS,
    GROUP_B_MOVIES,
    GROUP_B_USERS,
    LOW_RATINGS_USER,
    NOTHING_USER,
    TwoGroups,
    published_rows,
    seed_two_groups,
    small_settings,
)
from jobs.errors import ModelError, NothingToDoError
from jobs.run import run_once


@pytest.fixture
def two_groups(engine: Engine) -> TwoGroups:
    return seed_two_groups(engine)


def lists_by_user(engine: Engine) -> dict[int, list[tuple]]:  # type: ignore[type-arg]
    lists: dict[int, list[tuple]] = defaultdict(list)  # type: ignore[type-arg]
    for row in published_rows(engine, "recommendations"):
        lists[row[0]].append(row)
    return lists


def test_run_record_counts(engine: Engine, two_groups: TwoGroups) -> None:
    summary = run_once(engine, small_settings(str(engine.url)))
    with engine.connect() as connection:
        # Through the table object, so that JSON columns come back decoded.
        table = ModelRun.__table__
        run = (
            connection.execute(select(table).where(table.c.run_id == summary.run_id))
            .mappings()
            .one()
        )
    assert run["status"] == "succeeded"
    assert run["n_users"] == NOTHING_USER
    assert run["n_ratings"] == len(two_groups.ratings)
    assert run["n_favorites"] == 0
    assert run["n_interactions"] == two_groups.n_positive
    assert run["n_movies"] == 40
    assert run["error"] is None
    assert run["finished_at"] is not None
    assert set(run["timings"]) >= {
        "read",
        "build",
        "fit",
        "recommend",
        "similar",
        "total",
    }
    assert run["settings"]["model"]["factors"] == 4


def test_every_user_gets_a_list(engine: Engine, two_groups: TwoGroups) -> None:
    run_once(engine, small_settings(str(engine.url)))
    lists = lists_by_user(engine)
    assert sorted(lists) == list(range(1, NOTHING_USER + 1))
    for user_id, rows in lists.items():
        assert [row[1] for row in rows] == list(range(1, 6)), user_id


def test_lists_exclude_seen_movies(engine: Engine, two_groups: TwoGroups) -> None:
    run_once(engine, small_settings(str(engine.url)))
    for user_id, rows in lists_by_user(engine).items():
        recommended = {row[2] for row in rows}
        assert not recommended & two_groups.seen(user_id), user_id


def test_scores_do_not_increase(engine: Engine, two_groups: TwoGroups) -> None:
    run_once(engine, small_settings(str(engine.url)))
    for user_id, rows in lists_by_user(engine).items():
        scores = [row[3] for row in rows]
        assert scores == sorted(scores, reverse=True), user_id


def test_model_learns_taste_groups(engine: Engine, two_groups: TwoGroups) -> None:
    run_once(engine, small_settings(str(engine.url)))
    lists = lists_by_user(engine)
    for user_id in GROUP_A_USERS:
        assert lists[user_id][0][2] in GROUP_A_MOVIES, user_id
    for user_id in GROUP_B_USERS:
        assert lists[user_id][0][2] in GROUP_B_MOVIES, user_id


def test_users_without_positives_get_popular(
    engine: Engine, two_groups: TwoGroups
) -> None:
    run_once(engine, small_settings(str(engine.url)))
    lists = lists_by_user(engine)
    sources = {user_id: {row[4] for row in rows} for user_id, rows in lists.items()}
    assert sources[LOW_RATINGS_USER] == {"popular"}
    assert sources[NOTHING_USER] == {"popular"}
    assert sources[1] == {"als"}
    assert not {row[2] for row in lists[LOW_RATINGS_USER]} & {1, 21}


def test_short_list_is_not_padded(engine: Engine, two_groups: TwoGroups) -> None:
    run_once(engine, small_settings(str(engine.url), n=100))
    lists = lists_by_user(engine)
    assert len(lists[1]) == 40 - len(two_groups.seen(1))
    assert len(lists[NOTHING_USER]) == 40
    assert [row[1] for row in lists[1]] == list(range(1, len(lists[1]) + 1))


def test_similar_movies_rules(engine: Engine, two_groups: TwoGroups) -> None:
    run_once(engine, small_settings(str(engine.url)))
    rows = published_rows(engine, "similar_movies")
    by_movie: dict[int, list[int]] = defaultdict(list)
    for movie_id, _rank, similar_id, _score, _run in rows:
        by_movie[movie_id].append(similar_id)
        assert similar_id != movie_id
    assert all(len(similar) == 4 for similar in by_movie.values())
    assert by_movie[1][0] in GROUP_A_MOVIES
    assert by_movie[21][0] in GROUP_B_MOVIES


def test_min_support_limits_similar(engine: Engine, two_groups: TwoGroups) -> None:
    run_once(engine, small_settings(str(engine.url), similar_min_support=1_000))
    assert published_rows(engine, "similar_movies") == []


def test_second_run_replaces_first(engine: Engine, two_groups: TwoGroups) -> None:
    settings = small_settings(str(engine.url))
    first = run_once(engine, settings)
    second = run_once(engine, settings)
    run_ids = {row[5] for row in published_rows(engine, "recommendations")}
    assert run_ids == {second.run_id}
    assert second.run_id == first.run_id + 1
    similar_ids = {row[4] for row in published_rows(engine, "similar_movies")}
    assert similar_ids == {second.run_id}


def test_prune_keeps_newest_runs(engine: Engine, two_groups: TwoGroups) -> None:
    settings = small_settings(str(engine.url), keep_runs=2)
    run_ids = [run_once(engine, settings).run_id for _ in range(4)]
    with engine.connect() as connection:
        kept = (
            connection.execute(
                text("SELECT DISTINCT run_id FROM recommendation_rows ORDER BY run_id")
            )
            .scalars()
            .all()
        )
        records = connection.execute(
            text("SELECT COUNT(*) FROM model_runs")
        ).scalar_one()
    assert kept == run_ids[-2:]
    assert records == 4


def test_favorites_make_positives(engine: Engine, two_groups: TwoGroups) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO favorites (user_id, movie_id) VALUES (32, 5), (32, 6)")
        )
    summary = run_once(engine, small_settings(str(engine.url)))
    lists = lists_by_user(engine)
    assert summary.counts["n_favorites"] == 2
    assert summary.counts["n_interactions"] == two_groups.n_positive + 2
    assert {row[4] for row in lists[NOTHING_USER]} == {"als"}
    assert not {row[2] for row in lists[NOTHING_USER]} & {5, 6}


def test_empty_database_is_nothing_to_do(engine: Engine) -> None:
    with pytest.raises(NothingToDoError):
        run_once(engine, small_settings(str(engine.url)))
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT COUNT(*) FROM model_runs")).scalar_one()
            == 0
        )


def test_only_low_ratings_is_nothing_to_do(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO movies (movie_id, title) VALUES (1, 'A (2000)')")
        )
        connection.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (1, 1, 1.0, 0)"
            )
        )
    with pytest.raises(NothingToDoError, match="below"):
        run_once(engine, small_settings(str(engine.url)))
    with engine.connect() as connection:
        status = connection.execute(text("SELECT status FROM model_runs")).scalar_one()
    assert status == "failed"


def test_diverged_run_keeps_previous_lists(engine: Engine) -> None:
    # Three users and two movies: with 64 factors and no regularization the
    # normal equations are singular, and with this seed the fit produces NaN.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO movies (movie_id, title) "
                "VALUES (1, 'A (2000)'), (2, 'B (2000)')"
            )
        )
        connection.execute(text("INSERT INTO users (user_id) VALUES (1), (2), (3)"))
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (1, 1, 5, 0), (2, 2, 5, 0), (3, 1, 5, 0), (3, 2, 5, 0)"
            )
        )
    good = run_once(engine, small_settings(str(engine.url)))
    before = published_rows(engine, "recommendations")
    settings = small_settings(str(engine.url))
    diverging = dataclasses.replace(
        settings,
        model=dataclasses.replace(
            settings.model,
            factors=64,
            regularization=0.0,
            iterations=15,
            random_state=1,
        ),
    )
    with pytest.raises(ModelError):
        run_once(engine, diverging)
    assert published_rows(engine, "recommendations") == before
    with engine.connect() as connection:
        failed = connection.execute(
            text("SELECT status, error FROM model_runs WHERE run_id = :id"),
            {"id": good.run_id + 1},
        ).one()
        leftovers = connection.execute(
            text("SELECT COUNT(*) FROM recommendation_rows WHERE run_id = :id"),
            {"id": good.run_id + 1},
        ).scalar_one()
    assert failed[0] == "failed"
    assert "diverged" in failed[1]
    assert leftovers == 0


def test_user_who_saw_everything_gets_empty_list(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO movies (movie_id, title) "
                "VALUES (1, 'A (2000)'), (2, 'B (2000)')"
            )
        )
        connection.execute(text("INSERT INTO users (user_id) VALUES (1), (2)"))
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (1, 1, 5, 0), (1, 2, 4, 0), (2, 1, 5, 0)"
            )
        )
    summary = run_once(engine, small_settings(str(engine.url)))
    rows = published_rows(engine, "recommendations")
    assert [(row[0], row[2]) for row in rows] == [(2, 2)]
    assert summary.counts["n_recommendations"] == 1


def test_one_user_one_movie_database(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO movies (movie_id, title) VALUES (7, 'A (2000)')")
        )
        connection.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (1, 7, 5, 0)"
            )
        )
    summary = run_once(engine, small_settings(str(engine.url), similar_min_support=1))
    assert summary.counts["n_recommendations"] == 0
    assert summary.counts["n_similar"] == 0
    assert summary.counts["n_interactions"] == 1
