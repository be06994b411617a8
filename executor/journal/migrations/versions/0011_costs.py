"""costs: funding payments of perpetual swaps, keyed by the exchange's id

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 20:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import executor.journal.types

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'costs',
        sa.Column('account', sa.String(), nullable=False),
        sa.Column('cost_id', sa.String(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('symbol', sa.String(), nullable=False),
        sa.Column('time', executor.journal.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('amount', sa.Float(), nullable=False),
        sa.Column('currency', sa.String(), nullable=False),
        sa.Column('recorded_at', executor.journal.types.UTCDateTime(timezone=True),
                  nullable=False),
        sa.PrimaryKeyConstraint('account', 'cost_id'))
    with op.batch_alter_table('costs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_costs_time'), ['time'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('costs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_costs_time'))
    op.drop_table('costs')
