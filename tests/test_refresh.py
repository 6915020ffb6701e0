"""refresh on a real database: which users, which lists, and what readers see."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text

from db.engine import make_engine
from db.models import RunModel
from helpers import (
    GROUP_A_MOVIES,
    GROUP_B_MOVIES,
    LOW_RATINGS_USER,
    NOTHING_USER,
    TwoGroups,
    published_rows,
    seed_two_groups,
    small_settings,
)
from jobs.cli import main
from jobs.confidence import Weighting
from jobs.control import RunControl, RunStopped
from jobs.errors import LockedError, NothingToDoError
from jobs.lock import run_lock
from jobs.refresh import RefreshSummary, UserInputs, _rank, refresh
from jobs.run import run_once
from jobs.run_models import SavedModel, load_run_model

NEW_USER = 100
LONG_AGO = "2000-01-01 00:00:00"
ListRow = tuple[int, int, float, str, int]


def backdate_inputs(engine: Engine, where: str = "") -> None:
    """Stamp ratings and favorites as written long ago, so they count as old."""
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE ratings SET changed_at = '{LONG_AGO}' {where}")
        )
        connection.execute(
            text(f"UPDATE favorites SET created_at = '{LONG_AGO}' {where}")
        )


def add_user(
    engine: Engine,
    user_id: int = NEW_USER,
    favorites: tuple[int, ...] = (),
    ratings: tuple[tuple[int, float], ...] = (),
) -> None:
    """Insert a user with favorites and ratings by plain SQL, as other systems do."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (user_id, name) VALUES (:id, 'new')"),
            {"id": user_id},
        )
        for movie_id in favorites:
            connection.execute(
                text("INSERT INTO favorites (user_id, movie_id) VALUES (:u, :m)"),
                {"u": user_id, "m": movie_id},
            )
        for movie_id, stars in ratings:
            connection.execute(
                text(
                    "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                    "VALUES (:u, :m, :r, 0)"
                ),
                {"u": user_id, "m": movie_id, "r": stars},
            )


def user_list(engine: Engine, user_id: int) -> list[ListRow]:
    """Return (rank, movie_id, score, source, run_id) of a user's published list."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT rank, movie_id, score, source, run_id FROM recommendations "
                "WHERE user_id = :u ORDER BY rank"
            ),
            {"u": user_id},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def other_users_rows(engine: Engine, user_id: int) -> list[tuple]:  # type: ignore[type-arg]
    return [
        row for row in published_rows(engine, "recommendations") if row[0] != user_id
    ]


def stored_model(engine: Engine, run_id: int) -> SavedModel:
    with engine.connect() as connection:
        saved = load_run_model(connection, run_id)
    assert saved is not None
    return saved


@pytest.fixture
def published(engine: Engine) -> TwoGroups:
    """Two taste groups, stamped as old, with run 1 published."""
    data = seed_two_groups(engine)
    backdate_inputs(engine)
    run_once(engine, small_settings(str(engine.url)))
    return data


def test_stored_model_matches_run(engine: Engine, published: TwoGroups) -> None:
    saved = stored_model(engine, 1)
    support = Counter(movie for _, movie, stars in published.ratings if stars >= 3)
    assert saved.factors == 4
    assert saved.regularization == pytest.approx(0.1)
    assert saved.alpha == pytest.approx(1.0)
    assert saved.min_rating == pytest.approx(3.0)
    assert saved.favorite_weight == pytest.approx(5.0)
    assert saved.movie_ids.tolist() == list(range(1, 41))
    assert saved.item_support.tolist() == [support[m] for m in range(1, 41)]
    assert saved.item_factors.shape == (40, 4)
    assert saved.item_factors.dtype == np.float32
    assert np.isfinite(saved.item_factors).all()
    assert saved.inputs_as_of <= datetime.now(UTC)
    assert saved.refreshed_as_of is None


def test_refresh_without_run_is_nothing_to_do(engine: Engine) -> None:
    seed_two_groups(engine)
    with pytest.raises(NothingToDoError, match="no run has been published yet"):
        refresh(engine)


def test_refresh_without_stored_model(engine: Engine, published: TwoGroups) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM run_models"))
    with pytest.raises(NothingToDoError, match="run 1 stored no model"):
        refresh(engine)


def test_nothing_changed_writes_nothing(engine: Engine, published: TwoGroups) -> None:
    before = published_rows(engine, "recommendations")
    summary = refresh(engine)
    saved = stored_model(engine, 1)
    assert summary.n_users == 0
    assert summary.n_rows == 0
    assert published_rows(engine, "recommendations") == before
    assert saved.refreshed_as_of is not None
    assert saved.refreshed_as_of >= saved.inputs_as_of


@pytest.mark.parametrize(
    ("favorites", "group"),
    [((1, 2, 3, 4, 5), GROUP_A_MOVIES), ((21, 22, 23, 24, 25), GROUP_B_MOVIES)],
    ids=["group-a", "group-b"],
)
def test_new_user_gets_model_list(
    engine: Engine,
    published: TwoGroups,
    favorites: tuple[int, ...],
    group: range,
) -> None:
    add_user(engine, favorites=favorites)
    summary = refresh(engine)
    rows = user_list(engine, NEW_USER)
    assert summary.n_users == 1
    assert summary.n_new_users == 1
    assert summary.n_model == 1
    assert summary.n_popular == 0
    assert summary.n_rows == 5
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    assert {row[3] for row in rows} == {"als"}
    assert {row[4] for row in rows} == {1}
    assert not {row[1] for row in rows} & set(favorites)
    assert rows[0][1] in group
    scores = [row[2] for row in rows]
    assert scores == sorted(scores, reverse=True)


def test_other_users_untouched(engine: Engine, published: TwoGroups) -> None:
    before = other_users_rows(engine, NEW_USER)
    add_user(engine, favorites=(1, 2, 3))
    refresh(engine)
    assert other_users_rows(engine, NEW_USER) == before


def test_user_without_inputs_gets_popular(engine: Engine, published: TwoGroups) -> None:
    nightly = [row[1:4] for row in user_list(engine, NOTHING_USER)]
    add_user(engine)
    summary = refresh(engine)
    assert summary.n_popular == 1
    assert [row[1:4] for row in user_list(engine, NEW_USER)] == nightly


def test_low_ratings_only_gets_popular(engine: Engine, published: TwoGroups) -> None:
    # LOW_RATINGS_USER rated movie 1 with one star and movie 21 with two.
    nightly = [row[1:4] for row in user_list(engine, LOW_RATINGS_USER)]
    add_user(engine, ratings=((1, 1.0), (21, 2.0)))
    refresh(engine)
    rows = user_list(engine, NEW_USER)
    assert [row[1:4] for row in rows] == nightly
    assert {row[3] for row in rows} == {"popular"}
    assert not {row[1] for row in rows} & {1, 21}


def test_changed_rating_refreshes_user(engine: Engine, published: TwoGroups) -> None:
    movie_id = min(published.seen(1))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE ratings SET rating = 1 WHERE user_id = 1 AND movie_id = :m"),
            {"m": movie_id},
        )
    summary = refresh(engine)
    rows = user_list(engine, 1)
    assert summary.n_users == 1
    assert summary.n_new_users == 0
    assert len(rows) == 5
    assert not {row[1] for row in rows} & published.seen(1)


def test_rated_at_change_is_no_change(engine: Engine, published: TwoGroups) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE ratings SET rated_at = rated_at + 60 WHERE user_id = 1")
        )
    assert refresh(engine).n_users == 0


def test_new_rating_refreshes_user(engine: Engine, published: TwoGroups) -> None:
    before = user_list(engine, 16)
    # The user's first recommendation, which they now rate.
    unseen = before[0][1]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (16, :m, 5, 0)"
            ),
            {"m": unseen},
        )
    summary = refresh(engine)
    after = user_list(engine, 16)
    assert summary.n_users == 1
    assert unseen not in {row[1] for row in after}
    assert len(after) == 5


def test_unknown_movie_left_out(
    engine: Engine, published: TwoGroups, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO movies (movie_id, title) VALUES (41, 'New (2001)')")
        )
    add_user(engine, favorites=(41, 1, 2), ratings=((41, 5.0), (3, 4.0)))
    with caplog.at_level(logging.WARNING, logger="jobs.refresh"):
        summary = refresh(engine)
    rows = user_list(engine, NEW_USER)
    assert summary.n_ignored == 2
    assert "left out 2 positive ratings and favorites" in caplog.text
    assert {row[3] for row in rows} == {"als"}
    assert not {row[1] for row in rows} & {41, 1, 2, 3}


@pytest.mark.backends("sqlite")
def test_orphan_rows_left_out(
    engine: Engine, database_url: str, published: TwoGroups
) -> None:
    # Python's sqlite3 module, like the sqlite3 shell, leaves foreign keys off.
    # Triggers reject such favorites, but ratings are only checked by the keys.
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as shell:
        shell.execute(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "VALUES (999999, 1, 5, 0), (1, 777, 5, 0)"
        )
    summary = refresh(engine)
    rows = published_rows(engine, "recommendations")
    assert summary.n_users == 1
    assert summary.n_ignored == 1
    assert 999999 not in {row[0] for row in rows}
    assert 777 not in {row[2] for row in rows}


def test_change_in_overlap_refreshed_again(
    engine: Engine, published: TwoGroups
) -> None:
    add_user(engine, favorites=(1, 2, 3))
    first = refresh(engine)
    second = refresh(engine)
    assert first.n_users == 1
    assert second.n_users == 1
    assert second.n_new_users == 0
    assert second.since >= first.since


def test_old_change_not_refreshed_again(engine: Engine, published: TwoGroups) -> None:
    add_user(engine, favorites=(1, 2, 3))
    refresh(engine)
    before = user_list(engine, NEW_USER)
    backdate_inputs(engine, f"WHERE user_id = {NEW_USER}")
    summary = refresh(engine)
    assert summary.n_users == 0
    assert user_list(engine, NEW_USER) == before


def test_full_run_starts_new_watermark(engine: Engine, published: TwoGroups) -> None:
    add_user(engine, favorites=(1, 2, 3))
    refresh(engine)
    second = run_once(engine, small_settings(str(engine.url)))
    saved = stored_model(engine, second.run_id)
    assert saved.refreshed_as_of is None
    assert {row[4] for row in user_list(engine, NEW_USER)} == {second.run_id}


def test_refresh_holds_run_lock(engine: Engine, published: TwoGroups) -> None:
    add_user(engine, favorites=(1, 2, 3))
    with run_lock(engine):
        with pytest.raises(LockedError):
            refresh(engine)
    assert user_list(engine, NEW_USER) == []


def test_stop_request_writes_nothing(engine: Engine, published: TwoGroups) -> None:
    add_user(engine, favorites=(1, 2, 3))
    control = RunControl()
    control.request_stop("test stop")
    with pytest.raises(RunStopped, match="test stop"):
        refresh(engine, control)
    assert user_list(engine, NEW_USER) == []
    assert stored_model(engine, 1).refreshed_as_of is None


def test_refresh_command_output(
    engine: Engine,
    database_url: str,
    published: TwoGroups,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_user(engine, favorites=(1, 2, 3))
    assert main(["--database-url", database_url, "-q", "refresh"]) == 0
    refreshed = capsys.readouterr().out
    backdate_inputs(engine)
    assert main(["--database-url", database_url, "-q", "refresh"]) == 0
    unchanged = capsys.readouterr().out
    assert "refreshed 1 users of run 1" in refreshed
    assert "(1 without a list): 1 from the model, 0 by popularity, 5 rows" in refreshed
    assert "no user changed since" in unchanged
    assert "run 1 is unchanged" in unchanged


def test_refresh_command_without_run_exits_4(
    engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_two_groups(engine)
    status = main(["--database-url", database_url, "-q", "refresh"])
    err = capsys.readouterr().err
    assert status == 4
    assert "no run has been published yet" in err
    assert "python -m jobs run-once" in err


def test_refresh_command_locked_exits_5(
    engine: Engine, database_url: str, published: TwoGroups
) -> None:
    with run_lock(engine):
        status = main(["--database-url", database_url, "-q", "refresh"])
    assert status == 5


def test_readers_see_old_or_new_list(database_url: str) -> None:
    engine = make_engine(database_url)
    seed_two_groups(engine)
    backdate_inputs(engine)
    run_once(engine, small_settings(database_url))
    add_user(engine, favorites=(1,))
    refresh(engine)

    lists = [tuple(row[1] for row in user_list(engine, NEW_USER))]
    stop = threading.Event()
    observations: list[tuple[int, ...]] = []
    reader_engine = make_engine(database_url)

    def read_until_stopped() -> None:
        with reader_engine.connect() as connection:
            while not stop.is_set():
                with connection.begin():
                    rows = connection.execute(
                        text(
                            "SELECT movie_id FROM recommendations "
                            "WHERE user_id = :u ORDER BY rank"
                        ),
                        {"u": NEW_USER},
                    )
                    observations.append(tuple(row[0] for row in rows))

    reader = threading.Thread(target=read_until_stopped)
    reader.start()
    try:
        # Each new favorite changes the user's list; each refresh replaces it.
        for movie_id in range(2, 12):
            with engine.begin() as connection:
                connection.execute(
                    text("INSERT INTO favorites (user_id, movie_id) VALUES (:u, :m)"),
                    {"u": NEW_USER, "m": movie_id},
                )
            refresh(engine)
            lists.append(tuple(row[1] for row in user_list(engine, NEW_USER)))
    finally:
        stop.set()
        reader.join(timeout=60)
    assert len(observations) > 10
    assert () not in observations
    assert set(observations) <= set(lists)
    assert len(set(lists)) > 1
    reader_engine.dispose()
    engine.dispose()


@pytest.mark.parametrize("stage", ["fit", "recommend"])
def test_stopped_run_keeps_no_model(
    engine: Engine,
    published: TwoGroups,
    stage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run stopped before or after storing its model leaves nothing behind."""
    before = published_rows(engine, "recommendations")
    control = RunControl()
    # Ask for the stop as the stage before `stage` ends, as a signal would.
    trigger = {"fit": "stage build done", "recommend": "stage save_model done"}[stage]
    handler = StopOnMessage(control, trigger)
    logger = logging.getLogger("jobs.run")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="jobs.run"):
            with pytest.raises(RunStopped):
                run_once(engine, small_settings(str(engine.url)), control)
    finally:
        logger.removeHandler(handler)
    with engine.connect() as connection:
        status, error = connection.execute(
            text("SELECT status, error FROM model_runs WHERE run_id = 2")
        ).one()
        models = connection.execute(select(RunModel.run_id)).scalars().all()
    assert control.run_id == 2
    assert status == "abandoned"
    assert "test stop" in error
    assert "previous lists stay published" in error
    assert models == [1]
    assert published_rows(engine, "recommendations") == before
    assert f"stage {stage} done" not in caplog.text


def test_prune_deletes_old_models(engine: Engine, published: TwoGroups) -> None:
    settings = small_settings(str(engine.url), keep_runs=2)
    run_ids = [run_once(engine, settings).run_id for _ in range(3)]
    with engine.connect() as connection:
        models = connection.execute(
            select(RunModel.run_id).order_by(RunModel.run_id)
        ).scalars()
        assert list(models) == run_ids[-2:]


class StopOnMessage(logging.Handler):
    """Request a stop when a log message containing ``text`` is emitted."""

    def __init__(self, control: RunControl, text: str):
        super().__init__(level=logging.INFO)
        self.control = control
        self.text = text

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.control.request_stop("test stop")


# --- Ranking rules without a database ---------------------------------------


def random_model(rng: np.random.Generator, n_items: int) -> SavedModel:
    """A model over movies 10, 20, ... with random factors and support."""
    support = rng.integers(0, 50, n_items).astype(np.int64)
    return SavedModel(
        run_id=1,
        factors=3,
        regularization=0.5,
        alpha=1.0,
        min_rating=3.0,
        favorite_weight=5.0,
        weighting=Weighting("rating", 100, 4.0, support),
        item_factors=rng.normal(size=(n_items, 3)).astype(np.float32),
        movie_ids=np.arange(1, n_items + 1, dtype=np.int64) * 10,
        item_support=support,
        inputs_as_of=datetime(2026, 1, 1, tzinfo=UTC),
        refreshed_as_of=None,
    )


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=2**16),
)
def test_refresh_lists_obey_rules(
    n_users: int, n_items: int, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    saved = random_model(rng, n_items)
    # Movie ids 5, 15, ... are unknown to the model.
    candidates = np.concatenate([saved.movie_ids, saved.movie_ids - 5])
    user_ids = np.arange(1, n_users + 1, dtype=np.int64) * 7
    pairs = {
        (int(user), int(movie))
        for user in user_ids
        for movie in rng.choice(candidates, size=rng.integers(0, 6))
    }
    rated = sorted(pairs)[: len(pairs) // 2]
    favored = sorted(pairs)[len(pairs) // 2 :]
    changes = UserInputs(
        as_of=saved.inputs_as_of,
        user_ids=user_ids,
        n_new_users=0,
        rating_user_ids=np.array([u for u, _ in rated], dtype=np.int64),
        rating_movie_ids=np.array([m for _, m in rated], dtype=np.int64),
        ratings=rng.integers(1, 6, len(rated)).astype(np.float32),
        favorite_user_ids=np.array([u for u, _ in favored], dtype=np.int64),
        favorite_movie_ids=np.array([m for _, m in favored], dtype=np.int64),
    )
    summary = RefreshSummary(1, since=saved.inputs_as_of)
    columns = _rank(saved, changes, n, summary)

    known = set(saved.movie_ids.tolist())
    positives = {
        (u, m)
        for (u, m), stars in zip(rated, changes.ratings, strict=True)
        if stars >= 3 and m in known
    } | {(u, m) for u, m in favored if m in known}
    for user in user_ids.tolist():
        seen = {m for u, m in pairs if u == user}
        rows = [
            (rank, movie, score, source)
            for block in columns
            for uid, rank, movie, score, source in zip(
                block["user_id"],
                block["rank"],
                block["movie_id"],
                block["score"],
                block["source"],
                strict=True,
            )
            if uid == user
        ]
        expected_source = "als" if any(u == user for u, _ in positives) else "popular"
        assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
        assert len(rows) == min(n, len(known - seen))
        assert not {row[1] for row in rows} & seen
        assert {row[1] for row in rows} <= known
        assert {row[3] for row in rows} <= {expected_source}
        scores = [row[2] for row in rows]
        assert scores == sorted(scores, reverse=True)
    assert summary.n_model + summary.n_popular == n_users


def test_fold_in_matrix_uses_max_confidence() -> None:
    rng = np.random.default_rng(1)
    saved = random_model(rng, 4)
    changes = UserInputs(
        as_of=saved.inputs_as_of,
        user_ids=np.array([7], dtype=np.int64),
        n_new_users=0,
        rating_user_ids=np.array([7, 7, 7], dtype=np.int64),
        rating_movie_ids=np.array([10, 20, 30], dtype=np.int64),
        ratings=np.array([4.0, 2.0, 5.0], dtype=np.float32),
        favorite_user_ids=np.array([7, 7], dtype=np.int64),
        favorite_movie_ids=np.array([10, 30], dtype=np.int64),
    )
    from jobs.refresh import user_interactions

    interactions, ignored = user_interactions(saved, changes)
    user_items: sp.csr_matrix = interactions.user_items
    assert ignored == 0
    # Movie 10: max(4 stars, favorite 5); 20: two stars is no positive; 30: 5.
    assert user_items.toarray().tolist() == [[5.0, 0.0, 5.0, 0.0]]
    assert interactions.seen.toarray().tolist() == [[1.0, 1.0, 1.0, 0.0]]
