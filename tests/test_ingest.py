"""Ingest into real databases: counts, idempotence, accents, atomic failure."""

from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, func, select, text

import jobs.ingest
from db.models import Rating
from jobs.errors import DataError
from jobs.ingest import ingest

MOVIES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Misérables, Les (1995)::Drama|Musical",
    "3::Terminator, The (1984)::Action|Sci-Fi|Thriller",
]
RATINGS = [
    "1::1::5::978300760",
    "1::2::3::978300761",
    "2::1::2::978300762",
    "2::3::4::978300763",
    "3::3::1::978300764",
]


LONG_AGO = "2000-01-01 00:00:00"


def write_ml_1m(folder: Path, movies: list[str], ratings: list[str]) -> Path:
    """Write a tiny ml-1m layout; movies.dat in ISO-8859-1 as GroupLens ships it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n", encoding="ascii")
    return folder


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(
                text(f"SELECT COUNT(*) FROM {table}")
            ).scalar_one()
            for table in ("movies", "users", "ratings")
        }


def test_ingest_counts(engine: Engine, tmp_path: Path) -> None:
    result = ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    assert counts(engine) == {"movies": 3, "users": 3, "ratings": 5}
    assert result.layout == "ml-1m"
    assert result.ratings_new == 5
    assert result.users_new == 3


def test_ingest_keeps_low_ratings(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    with engine.connect() as connection:
        low = connection.execute(
            text("SELECT COUNT(*) FROM ratings WHERE rating < 3")
        ).scalar_one()
    assert low == 2


def test_ingest_twice_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    folder = write_ml_1m(tmp_path / "ml", MOVIES, RATINGS)
    ingest(engine, folder)
    again = ingest(engine, folder)
    assert counts(engine) == {"movies": 3, "users": 3, "ratings": 5}
    assert again.ratings_new == 0
    assert again.movies_new == 0
    assert again.users_new == 0


def test_reingest_updates_changed_rating(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "a", MOVIES, RATINGS))
    changed = [*RATINGS[:-1], "3::3::5::978300999"]
    ingest(engine, write_ml_1m(tmp_path / "b", MOVIES, changed))
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT rating, rated_at FROM ratings WHERE user_id = 3")
        ).one()
    assert row == (5.0, 978300999)


def test_accented_title_reads_back(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    with engine.connect() as connection:
        title = connection.execute(
            text("SELECT title FROM movies WHERE movie_id = 2")
        ).scalar_one()
    assert title == "Misérables, Les (1995)"


def test_malformed_line_leaves_database(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "good", MOVIES, RATINGS))
    bad = [*RATINGS, "4::1::5::978300765", "4::2::7::978300766"]
    with pytest.raises(DataError) as error:
        ingest(engine, write_ml_1m(tmp_path / "bad", MOVIES, bad))
    assert "ratings.dat line 7" in str(error.value)
    assert "7" in str(error.value)
    assert counts(engine) == {"movies": 3, "users": 3, "ratings": 5}


def test_unknown_movie_rating_rejected(engine: Engine, tmp_path: Path) -> None:
    bad = [*RATINGS, "4::99::5::978300765"]
    with pytest.raises(DataError) as error:
        ingest(engine, write_ml_1m(tmp_path / "bad", MOVIES, bad))
    assert "line 6" in str(error.value)
    assert "99" in str(error.value)
    assert counts(engine) == {"movies": 0, "users": 0, "ratings": 0}


def test_not_a_movielens_folder(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(DataError) as error:
        ingest(engine, tmp_path)
    message = str(error.value)
    assert "ratings.dat" in message
    assert "u.data" in message
    assert "ratings.csv" in message


def test_plain_sql_user_after_ingest(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    with engine.begin() as connection:
        new_id = connection.execute(
            text("INSERT INTO users (name) VALUES ('alice') RETURNING user_id")
        ).scalar_one()
    assert new_id == 4


def test_plain_sql_user_never_reuses_id(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    with engine.begin() as connection:
        first = connection.execute(
            text("INSERT INTO users (name) VALUES ('bob') RETURNING user_id")
        ).scalar_one()
        connection.execute(text("DELETE FROM users WHERE user_id = :id"), {"id": first})
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    with engine.begin() as connection:
        second = connection.execute(
            text("INSERT INTO users (name) VALUES ('carol') RETURNING user_id")
        ).scalar_one()
    assert first == 4
    assert second == 5


def test_bulk_load_checks_foreign_keys(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    from db.bulk import bulk_load, upsert_rows
    from db.models import Rating

    with pytest.raises(IntegrityError):
        with bulk_load(engine, Rating.__table__) as connection:  # type: ignore[arg-type]
            upsert_rows(
                connection,
                "ratings",
                {
                    "user_id": np.array([1, 2]),
                    "movie_id": np.array([5, 5]),
                    "rating": np.array([4.0, 3.0]),
                    "rated_at": np.array([0, 0]),
                },
                key=["user_id", "movie_id"],
            )
    assert counts(engine) == {"movies": 0, "users": 0, "ratings": 0}
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            enforced = connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one()
            assert enforced == 1


def test_other_release_titles_rejected(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "a", MOVIES, RATINGS))
    renamed = [MOVIES[0], "2::GoldenEye (1995)::Action", MOVIES[2]]
    with pytest.raises(DataError) as error:
        ingest(engine, write_ml_1m(tmp_path / "b", renamed, RATINGS))
    message = str(error.value)
    assert message.startswith("movies.dat: movie_id 2 is 'GoldenEye (1995)' here")
    assert "'Misérables, Les (1995)' in the database" in message
    with engine.connect() as connection:
        title = connection.execute(
            text("SELECT title FROM movies WHERE movie_id = 2")
        ).scalar_one()
    assert title == "Misérables, Les (1995)"


def database_now(engine: Engine) -> datetime:
    """Return the database clock, typed as ``ratings.changed_at`` reads back."""
    with engine.connect() as connection:
        return connection.execute(select(func.current_timestamp())).scalar_one()


def changed_at_by_pair(engine: Engine) -> dict[tuple[int, int], datetime]:
    changed_at = Rating.__table__.c.changed_at
    query = select(Rating.user_id, Rating.movie_id, changed_at)
    with engine.connect() as connection:
        return {
            (user, movie): stamp for user, movie, stamp in connection.execute(query)
        }


def backdate_ratings(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE ratings SET changed_at = '{LONG_AGO}'"))


def has_trigger(connection: Connection) -> bool:
    if connection.dialect.name == "sqlite":
        query = (
            "SELECT COUNT(*) FROM sqlite_master "
            "WHERE type = 'trigger' AND name = 'ratings_changed_at'"
        )
    else:
        query = (
            "SELECT COUNT(*) FROM pg_trigger "
            "WHERE tgname = 'ratings_changed_at' AND NOT tgisinternal"
        )
    return connection.execute(text(query)).scalar_one() == 1


def has_changed_at_index(connection: Connection) -> bool:
    if connection.dialect.name == "sqlite":
        query = (
            "SELECT COUNT(*) FROM sqlite_master "
            "WHERE type = 'index' AND name = 'ix_ratings_changed_at'"
        )
    else:
        query = (
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'ix_ratings_changed_at'"
        )
    return connection.execute(text(query)).scalar_one() == 1


def test_first_load_stamps_changed_at(engine: Engine, tmp_path: Path) -> None:
    before = database_now(engine)
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    after = database_now(engine)
    stamps = changed_at_by_pair(engine)
    assert len(stamps) == len(RATINGS)
    assert min(stamps.values()) >= before
    assert max(stamps.values()) <= after


def test_reingest_stamps_changed_rating_only(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "a", MOVIES, RATINGS))
    backdate_ratings(engine)
    long_ago = changed_at_by_pair(engine)[(1, 1)]
    # User 3 changes a rating, and user 1 changes only the time of another.
    changed = [RATINGS[0], "1::2::3::978309999", *RATINGS[2:-1], "3::3::5::978300999"]
    before = database_now(engine)
    ingest(engine, write_ml_1m(tmp_path / "b", MOVIES, changed))
    stamps = changed_at_by_pair(engine)
    assert stamps[(3, 3)] >= before
    assert stamps[(1, 2)] == long_ago
    assert stamps[(1, 1)] == long_ago
    assert stamps[(2, 3)] == long_ago


def test_ingest_keeps_changed_at_trigger(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    backdate_ratings(engine)
    with engine.begin() as connection:
        assert has_trigger(connection)
        assert has_changed_at_index(connection)
        connection.execute(
            text("UPDATE ratings SET rating = 1 WHERE user_id = 1 AND movie_id = 1")
        )
    stamps = changed_at_by_pair(engine)
    # The trigger, not ingest, moved the stamp of the updated rating.
    assert stamps[(1, 1)] > stamps[(1, 2)]


@pytest.mark.backends("sqlite")
def test_ingest_restores_trigger_sql(engine: Engine, tmp_path: Path) -> None:
    revision = importlib.import_module("migrations.versions.0002_refresh_tracking")
    ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'ratings_changed_at'")
        ).scalar_one()
        integrity = connection.execute(text("PRAGMA integrity_check")).scalar_one()
    assert stored == revision.SQLITE_TRIGGER.strip()
    assert integrity == "ok"


def test_failed_load_keeps_trigger_and_index(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_upsert = jobs.ingest.upsert_rows

    def upsert_then_fail(connection: Connection, table: str, *args, **kwargs) -> int:  # type: ignore[no-untyped-def]
        written = real_upsert(connection, table, *args, **kwargs)
        if table == "ratings":
            raise RuntimeError("simulated failure after the ratings upsert")
        return written

    monkeypatch.setattr(jobs.ingest, "upsert_rows", upsert_then_fail)
    with pytest.raises(RuntimeError, match="simulated failure"):
        ingest(engine, write_ml_1m(tmp_path / "ml", MOVIES, RATINGS))
    assert counts(engine) == {"movies": 0, "users": 0, "ratings": 0}
    with engine.connect() as connection:
        assert has_trigger(connection)
        assert has_changed_at_index(connection)


def test_movie_without_genres_loads(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Untitled (2000),(no genres listed)\n"
        "2,Other (2001),Drama\n",
        encoding="utf-8",
    )
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,978300760\n", encoding="utf-8"
    )
    ingest(engine, folder)
    with engine.connect() as connection:
        genres = connection.execute(
            text("SELECT genres FROM movies ORDER BY movie_id")
        ).scalars()
        assert list(genres) == ["", "Drama"]
