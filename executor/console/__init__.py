"""The operator console (`dta console`): a web process of its own over the daemon's
journal, so a console crash never touches trading.

Modules: ``settings`` (the ``[console]`` section, imported by ``executor.settings``, so
it stays free of web imports), ``app`` (``create_app``), ``security`` (passwords,
sessions, CSRF, rate limit, roles), ``web`` (the request-scoped journal and rendering),
``live`` (server-sent events), ``server`` (bind rules, uvicorn) and ``pages/`` (one
module per page: router + data function + template).
"""
