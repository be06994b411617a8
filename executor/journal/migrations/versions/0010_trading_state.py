"""trading state: one name; kill_switch_events becomes trading_state_events

The table held the verbs an operator typed (engage, reduce, release); it now holds the
state they lead to (HALTED, REDUCING, ACTIVE), the names the code, the CLI and the docs
use. Rows are rewritten, never dropped: the history of who halted and why stays.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 14:00:00
"""
from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_STATES = (("engage", "HALTED"), ("reduce", "REDUCING"), ("release", "ACTIVE"))


def upgrade() -> None:
    op.rename_table('kill_switch_events', 'trading_state_events')
    with op.batch_alter_table('trading_state_events', schema=None) as batch_op:
        batch_op.alter_column('action', new_column_name='state')
    for verb, state in _STATES:
        op.execute(f"UPDATE trading_state_events SET state = '{state}' WHERE state = '{verb}'")


def downgrade() -> None:
    for verb, state in _STATES:
        op.execute(f"UPDATE trading_state_events SET state = '{verb}' WHERE state = '{state}'")
    with op.batch_alter_table('trading_state_events', schema=None) as batch_op:
        batch_op.alter_column('state', new_column_name='action')
    op.rename_table('trading_state_events', 'kill_switch_events')
