"""day baselines and broker errors: the daily halts' state survives versions and restarts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 11:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import executor.journal.types

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'day_baselines',
        sa.Column('account', sa.String(), nullable=False),
        sa.Column('day', executor.journal.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('start_equity', sa.Float(), nullable=False),
        sa.Column('at', executor.journal.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('account', 'day'))
    op.create_table(
        'broker_errors',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account', sa.String(), nullable=False),
        sa.Column('at', executor.journal.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('detail', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('broker_errors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broker_errors_account'), ['account'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('broker_errors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broker_errors_account'))
    op.drop_table('broker_errors')
    op.drop_table('day_baselines')
