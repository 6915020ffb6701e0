"""holdout metrics per run, "because you liked" per recommendation

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:00:00.000000

``model_runs`` gets one column per holdout metric, for the model and for the
popularity baseline, so that analysts can chart quality with plain SQL.
``recommendation_rows.because_movie_id`` names the user's own positive that
contributed most to each recommendation, and the ``recommendations`` view
shows it as its last column, so readers that select columns by position keep
working. ``run_models`` records the confidence scheme and the figures that
BM25 needs, so that ``refresh`` weights folded-in users the same way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

METRICS = ("precision", "recall", "map", "ndcg", "coverage")

RECOMMENDATIONS_VIEW = """
CREATE VIEW recommendations AS
SELECT r.user_id, r.rank, r.movie_id, r.score, r.source, r.run_id,
       r.because_movie_id
FROM recommendation_rows AS r
JOIN published_run AS p ON p.run_id = r.run_id
"""

PREVIOUS_RECOMMENDATIONS_VIEW = """
CREATE VIEW recommendations AS
SELECT r.user_id, r.rank, r.movie_id, r.score, r.source, r.run_id
FROM recommendation_rows AS r
JOIN published_run AS p ON p.run_id = r.run_id
"""


def _evaluation_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    columns = [
        sa.Column("eval_k", sa.Integer(), nullable=True),
        sa.Column("eval_users", sa.Integer(), nullable=True),
        sa.Column("eval_held_out", sa.Integer(), nullable=True),
    ]
    for prefix in ("eval", "popular"):
        columns += [
            sa.Column(f"{prefix}_{name}", sa.Float(), nullable=True) for name in METRICS
        ]
    return columns


def upgrade() -> None:
    for column in _evaluation_columns():
        op.add_column("model_runs", column)
    op.execute("DROP VIEW recommendations")
    op.add_column(
        "recommendation_rows",
        sa.Column("because_movie_id", sa.Integer(), nullable=True),
    )
    op.execute(RECOMMENDATIONS_VIEW)
    op.add_column(
        "run_models",
        sa.Column(
            "confidence", sa.String(length=8), server_default="rating", nullable=False
        ),
    )
    op.add_column(
        "run_models", sa.Column("confidence_figures", sa.JSON(), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("run_models", "confidence_figures")
    op.drop_column("run_models", "confidence")
    op.execute("DROP VIEW recommendations")
    op.drop_column("recommendation_rows", "because_movie_id")
    op.execute(PREVIOUS_RECOMMENDATIONS_VIEW)
    for column in reversed(_evaluation_columns()):
        op.drop_column("model_runs", column.name)
