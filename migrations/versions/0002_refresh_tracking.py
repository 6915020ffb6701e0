"""track input changes and store each run's model for refresh

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:30:00.000000

``ratings.changed_at`` records when a rating arrived or its value last
changed, by the database clock; ``favorites.created_at`` already does that for
favorites. ``run_models`` keeps each run's item factors, so that ``refresh``
can compute lists for changed users without retraining.

Existing ratings get the time of the upgrade as ``changed_at``. SQLite cannot
add a column whose default is not a constant, so there the ratings table is
rebuilt (copied) once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A server default only covers INSERT, so an UPDATE that changes a rating in
# place moves changed_at through a trigger. Changes of rated_at alone do not
# count: the model never reads it.
SQLITE_TRIGGER = """
CREATE TRIGGER ratings_changed_at AFTER UPDATE OF rating ON ratings
FOR EACH ROW WHEN NEW.rating IS NOT OLD.rating
BEGIN
    UPDATE ratings SET changed_at = CURRENT_TIMESTAMP
    WHERE user_id = NEW.user_id AND movie_id = NEW.movie_id;
END
"""

POSTGRESQL_TRIGGER_FUNCTION = """
CREATE FUNCTION ratings_set_changed_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.rating IS DISTINCT FROM OLD.rating THEN
        NEW.changed_at := CURRENT_TIMESTAMP;
    END IF;
    RETURN NEW;
END
$$
"""

POSTGRESQL_TRIGGER = """
CREATE TRIGGER ratings_changed_at BEFORE UPDATE OF rating ON ratings
FOR EACH ROW EXECUTE FUNCTION ratings_set_changed_at()
"""


def _changed_at_column() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "changed_at",
        sa.DateTime(timezone=True),
        server_default=sa.text("(CURRENT_TIMESTAMP)"),
        nullable=False,
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("ratings", recreate="always") as batch:
            batch.add_column(_changed_at_column())
        op.execute(SQLITE_TRIGGER)
    else:
        op.add_column("ratings", _changed_at_column())
        op.execute(POSTGRESQL_TRIGGER_FUNCTION)
        op.execute(POSTGRESQL_TRIGGER)
    op.create_index(op.f("ix_ratings_changed_at"), "ratings", ["changed_at"])
    op.create_index(op.f("ix_favorites_created_at"), "favorites", ["created_at"])

    op.create_table(
        "run_models",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("factors", sa.Integer(), nullable=False),
        sa.Column("regularization", sa.Float(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("min_rating", sa.Float(), nullable=False),
        sa.Column("favorite_weight", sa.Float(), nullable=False),
        sa.Column("item_factors", sa.LargeBinary(), nullable=False),
        sa.Column("movie_ids", sa.LargeBinary(), nullable=False),
        sa.Column("item_support", sa.LargeBinary(), nullable=False),
        sa.Column("inputs_as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_as_of", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["model_runs.run_id"],
            name=op.f("fk_run_models_run_id_model_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_models")),
    )


def downgrade() -> None:
    op.drop_table("run_models")
    op.drop_index(op.f("ix_favorites_created_at"), table_name="favorites")
    op.drop_index(op.f("ix_ratings_changed_at"), table_name="ratings")
    op.execute("DROP TRIGGER ratings_changed_at" + _on_ratings())
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("ratings", recreate="always") as batch:
            batch.drop_column("changed_at")
    else:
        op.execute("DROP FUNCTION ratings_set_changed_at()")
        op.drop_column("ratings", "changed_at")


def _on_ratings() -> str:
    # PostgreSQL names a trigger per table; SQLite names it per schema.
    return " ON ratings" if op.get_bind().dialect.name == "postgresql" else ""
