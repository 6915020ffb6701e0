"""Ingest into real databases: counts, idempotence, accents, atomic failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, text

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
