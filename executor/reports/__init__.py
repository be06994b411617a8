"""Replay analytics: trades and run metrics from the journal, SMC detection scoring against
reference labels, A/B tests of the ensemble against rules only, and a self-contained HTML
report. Definitions of every number are in docs/reports.md.

Nothing here changes what the daemon decides: the metrics read what the cycle journaled,
and the replay harness drives the same ``build_daemon`` graph that `dta run` does.
"""
