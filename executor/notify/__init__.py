"""Notifications that reach people (Telegram, Slack, Discord, e-mail, webhooks) through
apprise: settings, messages, the sender off the trading thread, the journal hooks and the
daily summary. See ``executor/notify/hooks.py`` for which event comes from where."""
