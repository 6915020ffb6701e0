"""Because you liked: the positive each recommendation cites, and ``jobs explain``."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import Engine, text

from helpers import (
    GROUP_B_MOVIES,
    LOW_RATINGS_USER,
    seed_two_groups,
    small_settings,
)
from jobs import model
from jobs.cli import main
from jobs.refresh import refresh
from jobs.run import run_once

# "  +0.2455  Movie 9 (2000)  (strength 5)"
CONTRIBUTION = re.compile(r"\s+([+-]\d+\.\d+)  (.+)  \(strength [\d.]+\)")


def test_top_contributors_match_implicit_explain() -> None:
    rng = np.random.default_rng(5)
    dense = (rng.random((80, 50)) < 0.15) * rng.integers(3, 6, (80, 50))
    dense[7] = 0  # a user without positives
    confidences = sp.csr_matrix(dense.astype(np.float32))
    als = model.fit_als(
        confidences,
        factors=8,
        regularization=2.0,
        alpha=2.0,
        iterations=5,
        random_state=3,
    )
    users = np.arange(80, dtype=np.int64)
    (batch,) = model.recommend(als, users, confidences, 6)
    ours = model.top_contributors(als, confidences, batch)

    assert ours[7].tolist() == [-1] * 6
    checked = 0
    for user in users[users != 7]:
        for column in range(6):
            _, parts, _ = als.explain(
                int(user), confidences, int(batch.ids[user, column]), N=1
            )
            assert ours[user, column] == parts[0][0]
            checked += 1
    assert checked == 79 * 6


def positives_of(engine: Engine, user_id: int) -> set[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT movie_id FROM ratings WHERE user_id = :u AND rating >= 3 "
                "UNION SELECT movie_id FROM favorites WHERE user_id = :u"
            ),
            {"u": user_id},
        )
        return {row[0] for row in rows}


def because_by_user(engine: Engine) -> dict[int, list[tuple[str, int | None]]]:
    lists: dict[int, list[tuple[str, int | None]]] = {}
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT user_id, source, because_movie_id FROM recommendations "
                "ORDER BY user_id, rank"
            )
        )
        for user_id, source, because in rows:
            lists.setdefault(user_id, []).append((source, because))
    return lists


def test_every_model_recommendation_cites_an_own_positive(engine: Engine) -> None:
    seed_two_groups(engine)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO favorites (user_id, movie_id) VALUES (3, 40)")
        )
    run_once(engine, small_settings(str(engine.url)))

    lists = because_by_user(engine)
    cited_favorite = False
    for user_id, rows in lists.items():
        own = positives_of(engine, user_id)
        for source, because in rows:
            if source == "popular":
                assert because is None
            else:
                assert because in own
                cited_favorite |= user_id == 3 and because == 40
    # Users without positives get popular lists, which cite nothing.
    assert {source for source, _ in lists[LOW_RATINGS_USER]} == {"popular"}
    assert cited_favorite or all(b != 40 for _, b in lists[3])


def test_refresh_cites_the_new_users_favorites(engine: Engine) -> None:
    seed_two_groups(engine)
    run_once(engine, small_settings(str(engine.url)))
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (user_id, name) VALUES (50, 'b')"))
        connection.execute(
            text(
                "INSERT INTO favorites (user_id, movie_id) VALUES (50, 21), (50, 22), "
                "(50, 23)"
            )
        )
    refresh(engine)

    rows = because_by_user(engine)[50]
    assert rows
    assert {source for source, _ in rows} == {"als"}
    assert {because for _, because in rows} <= {21, 22, 23}


@pytest.fixture
def published(engine: Engine, tmp_path: object) -> list[str]:
    """Seed, run, and return the CLI arguments that reach the database."""
    seed_two_groups(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO movies (movie_id, title, genres) "
                "VALUES (99, 'Unrated (1999)', '')"
            )
        )
    run_once(engine, small_settings(str(engine.url)))
    return ["--database-url", engine.url.render_as_string(hide_password=False)]


def test_explain_breaks_down_the_published_first_pick(
    engine: Engine, published: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.connect() as connection:
        movie_id, because = connection.execute(
            text(
                "SELECT movie_id, because_movie_id FROM recommendations "
                "WHERE user_id = 1 AND rank = 1"
            )
        ).one()
    status = main([*published, "explain", "1", "--movie-id", str(movie_id)])
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    assert (
        lines[0]
        == f"Movie {movie_id} (2000) (movie_id {movie_id}) for user_id 1, run 1:"
    )
    published_score = float(lines[1].rsplit(" ", 1)[1])
    assert (
        lines[1]
        == f"  rank 1 of the user's published list, score {published_score:.4f}"
    )
    parsed = [CONTRIBUTION.fullmatch(line) for line in lines[3:]]
    contributions = [(float(m[1]), m[2]) for m in parsed if m is not None]
    # User 1 has 8 ratings of 4 or 5 stars, all positives.
    assert len(contributions) == len(lines[3:]) == 8
    assert contributions[0][1] == f"Movie {because} (2000)"
    values = [value for value, _ in contributions]
    assert values == sorted(values, reverse=True)
    score = float(lines[2].split()[1])
    assert lines[2].startswith(f"  score {score:.4f} from the user's current ratings")
    # The exact solve and the last ALS iteration agree closely.
    assert score == pytest.approx(published_score, abs=0.05)
    assert sum(values) == pytest.approx(score, abs=1e-3)


def test_explain_refuses_a_user_without_positives(
    published: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*published, "explain", str(LOW_RATINGS_USER), "Movie 5 (2000)"])
    err = capsys.readouterr().err
    assert status == 4
    assert (
        f"user_id {LOW_RATINGS_USER} has no positive that run 1 was trained on" in err
    )


def test_explain_limits_the_printed_terms(
    published: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*published, "explain", "1", "Movie 21 (2000)"])
    full = capsys.readouterr().out.splitlines()
    status_short = main([*published, "explain", "1", "Movie 21 (2000)", "-n", "3"])
    short = capsys.readouterr().out.splitlines()

    assert status == status_short == 0
    assert short[:6] == full[:6]
    assert len(short) == 7
    rest = sum(float(line.split()[0]) for line in full[6:])
    assert short[6].endswith("  the other 5 positives together")
    # Each printed term is rounded to 4 places, so the sums may differ a little.
    assert float(short[6].split()[0]) == pytest.approx(rest, abs=1e-3)


def test_explain_rejects_title_and_movie_id(
    published: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*published, "explain", "1", "Movie 5 (2000)", "--movie-id", "6"])
    assert status == 2
    assert "give a TITLE or --movie-id, not both" in capsys.readouterr().err


def test_recommend_explains_a_missing_list(
    engine: Engine, published: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (user_id, name) VALUES (60, 'c')"))
        connection.execute(
            text("INSERT INTO favorites (user_id, movie_id) VALUES (60, 3)")
        )
    status = main([*published, "recommend", "60"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[1] == (
        "  none: run 1 has no list for this user, who was added or changed after "
        "it read its data; run: python -m jobs refresh (or wait for the next "
        "scheduled refresh)"
    )


def test_explain_refuses_a_movie_without_factors(
    published: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*published, "explain", "1", "Unrated (1999)"])
    err = capsys.readouterr().err
    assert status == 3
    assert "Unrated (1999) (movie_id 99) had no positive when run 1 trained" in err


def test_explain_marks_a_seen_movie(
    engine: Engine, published: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.connect() as connection:
        rated = connection.execute(
            text("SELECT MIN(movie_id) FROM ratings WHERE user_id = 20")
        ).scalar_one()
    assert rated in GROUP_B_MOVIES
    status = main([*published, "explain", "20", "--movie-id", str(rated)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[1] == (
        "  the user has rated or favorited it, so it is never recommended to them"
    )


def test_refresh_weights_new_users_like_the_run(engine: Engine) -> None:
    seed_two_groups(engine)
    base = small_settings(str(engine.url))
    settings = dataclasses.replace(
        base, model=dataclasses.replace(base.model, confidence="bm25")
    )
    run_once(engine, settings)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (user_id, name) VALUES (50, 'b')"))
        connection.execute(
            text("INSERT INTO favorites (user_id, movie_id) VALUES (50, 21), (50, 22)")
        )
        stored = connection.execute(
            text("SELECT confidence, confidence_figures FROM run_models")
        ).one()
    refresh(engine)

    assert stored.confidence == "bm25"
    figures = stored.confidence_figures
    if isinstance(figures, str):
        figures = json.loads(figures)
    # 32 users; 240 positives of 4 or 5 stars.
    assert figures["n_users"] == 32
    assert 4 * 240 / 32 <= figures["average_strength"] <= 5 * 240 / 32
    rows = because_by_user(engine)[50]
    assert len(rows) == 5
    assert {because for _, because in rows} <= {21, 22}
