"""SQLAlchemy tables of movie-recs.

Input tables (``movies``, ``users``, ``ratings``, ``favorites``) are written by
ingest and by other systems with plain SQL. Output tables are keyed by
``run_id``; readers use the ``recommendations`` and ``similar_movies`` views
(created by the migrations), which show only the run named in
``published_run``.

The run-keyed result tables have no foreign keys. They contain derived rows
written in bulk from one snapshot, and PostgreSQL's per-row foreign-key
triggers made writing them about ten times slower (0.25 s against 2-3 s for
120,800 rows, measured on ml-1m). Runs delete their own rows explicitly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("running", "succeeded", "failed", "abandoned")
RECOMMENDATION_SOURCES = ("als", "popular")


class Base(DeclarativeBase):
    """Declarative base whose metadata names every constraint."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Movie(Base):
    """A catalogue entry; ``movie_id`` is the id of the source data set."""

    __tablename__ = "movies"

    movie_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    # Genre names joined with '|', as MovieLens writes them; '' when none.
    genres: Mapped[str] = mapped_column(String(500), server_default="")


class User(Base):
    """A person who rates or favorites movies.

    Ingested users keep their MovieLens ids. A user inserted with plain SQL and
    no id gets a fresh one: SQLite's AUTOINCREMENT and PostgreSQL's identity
    column never hand out an id that was used before.
    """

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    user_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp()
    )


class Rating(Base):
    """One star rating; low ratings are kept because filtering is the model's job."""

    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("rating >= 0.5 AND rating <= 5", name="rating_range"),
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True
    )
    movie_id: Mapped[int] = mapped_column(
        ForeignKey("movies.movie_id", ondelete="CASCADE"), primary_key=True
    )
    rating: Mapped[float] = mapped_column(Float)
    # Seconds since the Unix epoch (UTC), as the MovieLens files store it.
    rated_at: Mapped[int] = mapped_column(BigInteger)
    # When the row arrived or its rating last changed, by the database clock:
    # a server default on INSERT and a trigger on UPDATE OF rating (revision
    # 0002). ``refresh`` finds changed users by it; ``rated_at`` comes from
    # the source data and cannot be trusted for that.
    changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), index=True
    )


class Favorite(Base):
    """A movie a user marked as a favorite: a strong positive signal."""

    __tablename__ = "favorites"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True
    )
    movie_id: Mapped[int] = mapped_column(
        ForeignKey("movies.movie_id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), index=True
    )


class ModelRun(Base):
    """One execution of the main job: settings, counts, timings and outcome."""

    __tablename__ = "model_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'abandoned')",
            name="status_known",
        ),
    )

    run_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_users: Mapped[int | None] = mapped_column(Integer)
    n_movies: Mapped[int | None] = mapped_column(Integer)
    n_ratings: Mapped[int | None] = mapped_column(Integer)
    n_favorites: Mapped[int | None] = mapped_column(Integer)
    n_interactions: Mapped[int | None] = mapped_column(Integer)
    n_recommendations: Mapped[int | None] = mapped_column(Integer)
    n_similar: Mapped[int | None] = mapped_column(Integer)
    # Stage name -> wall seconds, filled as each stage ends.
    timings: Mapped[dict[str, float] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Holdout evaluation (jobs/evaluate.py): list length, users scored,
    # hidden positives, then each metric for the model (eval_) and for the
    # popularity baseline (popular_). NULL when the run did not evaluate.
    eval_k: Mapped[int | None] = mapped_column(Integer)
    eval_users: Mapped[int | None] = mapped_column(Integer)
    eval_held_out: Mapped[int | None] = mapped_column(Integer)
    eval_precision: Mapped[float | None] = mapped_column(Float)
    eval_recall: Mapped[float | None] = mapped_column(Float)
    eval_map: Mapped[float | None] = mapped_column(Float)
    eval_ndcg: Mapped[float | None] = mapped_column(Float)
    eval_coverage: Mapped[float | None] = mapped_column(Float)
    popular_precision: Mapped[float | None] = mapped_column(Float)
    popular_recall: Mapped[float | None] = mapped_column(Float)
    popular_map: Mapped[float | None] = mapped_column(Float)
    popular_ndcg: Mapped[float | None] = mapped_column(Float)
    popular_coverage: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class RecommendationRow(Base):
    """A ranked recommendation of one run; readers use the ``recommendations`` view."""

    __tablename__ = "recommendation_rows"
    __table_args__ = (
        CheckConstraint("source IN ('als', 'popular')", name="source_known"),
        CheckConstraint("rank >= 1", name="rank_positive"),
    )

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    movie_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8))
    # The user's own positive that contributed most to the score; NULL for
    # popular lists.
    because_movie_id: Mapped[int | None] = mapped_column(Integer)


class SimilarMovieRow(Base):
    """A ranked similar movie of one run; readers use the ``similar_movies`` view."""

    __tablename__ = "similar_movie_rows"
    __table_args__ = (CheckConstraint("rank >= 1", name="rank_positive"),)

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    movie_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    similar_movie_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)


class PublishedRun(Base):
    """The single row naming the run that the reader views show."""

    __tablename__ = "published_run"
    __table_args__ = (CheckConstraint("slot = 1", name="single_row"),)

    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    run_id: Mapped[int] = mapped_column(ForeignKey("model_runs.run_id"))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunModel(Base):
    """The trained model of one succeeded or running run, for ``refresh``.

    ``refresh`` solves new users' factors against these item factors, so it
    needs no retrain. Arrays are stored as ``np.save`` bytes.
    """

    __tablename__ = "run_models"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("model_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    factors: Mapped[int] = mapped_column(Integer)
    regularization: Mapped[float] = mapped_column(Float)
    alpha: Mapped[float] = mapped_column(Float)
    min_rating: Mapped[float] = mapped_column(Float)
    favorite_weight: Mapped[float] = mapped_column(Float)
    # float32, shape (n_items, factors); row item_idx is movie_ids[item_idx].
    item_factors: Mapped[bytes] = mapped_column(LargeBinary)
    # int64, shape (n_items,): the movie_id of each item_idx.
    movie_ids: Mapped[bytes] = mapped_column(LargeBinary)
    # int64, shape (n_items,): positives per item in the run's training data.
    item_support: Mapped[bytes] = mapped_column(LargeBinary)
    # The confidence scheme ([model] confidence) and, for bm25, the number of
    # users and the average strength per user that weighted the matrix.
    confidence: Mapped[str] = mapped_column(String(8), server_default="rating")
    confidence_figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Database clock at or before the run's snapshot of the inputs.
    inputs_as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Database clock at the snapshot of the latest refresh; NULL before one.
    refreshed_as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
