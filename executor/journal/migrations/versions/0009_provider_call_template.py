"""provider calls: the template's content hash and whether the answer was replayed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('provider_calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('template_hash', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('replayed', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('provider_calls', schema=None) as batch_op:
        batch_op.drop_column('replayed')
        batch_op.drop_column('template_hash')
