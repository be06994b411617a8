"""decision size factor: the fraction of the configured volume the risk stage let through

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 17:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('size_factor', sa.Float(), nullable=False,
                                      server_default='1.0'))


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_column('size_factor')
