"""create input, run and result tables

Revision ID: 0001
Revises:
Create Date: 2026-12-04 15:40:59.038816
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The reader contract: each view shows exactly the run named in published_run,
# so flipping that one row publishes a whole run in one statement.
RECOMMENDATIONS_VIEW = """
CREATE VIEW recommendations AS
SELECT r.user_id, r.rank, r.movie_id, r.score, r.source, r.run_id
FROM recommendation_rows AS r
JOIN published_run AS p ON p.run_id = r.run_id
"""

SIMILAR_MOVIES_VIEW = """
CREATE VIEW similar_movies AS
SELECT s.movie_id, s.rank, s.similar_movie_id, s.score, s.run_id
FROM similar_movie_rows AS s
JOIN published_run AS p ON p.run_id = s.run_id
"""


def upgrade() -> None:
    op.create_table(
        "model_runs",
        sa.Column("run_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("n_users", sa.Integer(), nullable=True),
        sa.Column("n_movies", sa.Integer(), nullable=True),
        sa.Column("n_ratings", sa.Integer(), nullable=True),
        sa.Column("n_favorites", sa.Integer(), nullable=True),
        sa.Column("n_interactions", sa.Integer(), nullable=True),
        sa.Column("n_recommendations", sa.Integer(), nullable=True),
        sa.Column("n_similar", sa.Integer(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'abandoned')",
            name=op.f("ck_model_runs_status_known"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_model_runs")),
    )
    op.create_table(
        "movies",
        sa.Column("movie_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("genres", sa.String(length=500), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("movie_id", name=op.f("pk_movies")),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "favorites",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("movie_id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["movie_id"],
            ["movies.movie_id"],
            name=op.f("fk_favorites_movie_id_movies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_favorites_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "movie_id", name=op.f("pk_favorites")),
    )
    op.create_table(
        "published_run",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("slot = 1", name=op.f("ck_published_run_single_row")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["model_runs.run_id"],
            name=op.f("fk_published_run_run_id_model_runs"),
        ),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_published_run")),
    )
    op.create_table(
        "ratings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("movie_id", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Float(), nullable=False),
        sa.Column("rated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "rating >= 0.5 AND rating <= 5", name=op.f("ck_ratings_rating_range")
        ),
        sa.ForeignKeyConstraint(
            ["movie_id"],
            ["movies.movie_id"],
            name=op.f("fk_ratings_movie_id_movies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_ratings_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "movie_id", name=op.f("pk_ratings")),
    )
    op.create_table(
        "recommendation_rows",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("movie_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.CheckConstraint(
            "source IN ('als', 'popular')",
            name=op.f("ck_recommendation_rows_source_known"),
        ),
        sa.CheckConstraint(
            "rank >= 1", name=op.f("ck_recommendation_rows_rank_positive")
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "user_id", "rank", name=op.f("pk_recommendation_rows")
        ),
    )
    op.create_table(
        "similar_movie_rows",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("movie_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("similar_movie_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "rank >= 1", name=op.f("ck_similar_movie_rows_rank_positive")
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "movie_id", "rank", name=op.f("pk_similar_movie_rows")
        ),
    )
    op.execute(RECOMMENDATIONS_VIEW)
    op.execute(SIMILAR_MOVIES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW similar_movies")
    op.execute("DROP VIEW recommendations")
    op.drop_table("similar_movie_rows")
    op.drop_table("recommendation_rows")
    op.drop_table("ratings")
    op.drop_table("published_run")
    op.drop_table("favorites")
    op.drop_table("users")
    op.drop_table("movies")
    op.drop_table("model_runs")
