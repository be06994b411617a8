"""What tests share besides fixtures: the sample data (``samples``), keyword-only builders
of the domain values (``builders``) and the market moment the ensemble tests put to their
providers (``ensemble_scene``).

Imported as ``support`` the way ``fakes`` is: pytest puts ``tests/`` on ``sys.path`` (the
rootdir conftest's folder, "prepend" import mode), and ``tests/reliability/crash_child.py``
puts it there itself. Fixtures stay in ``conftest.py``, which no test imports as a module:
it is pytest's plugin file, and the name ``conftest`` stops meaning this one file as soon as a
folder below gets a ``conftest.py`` of its own or pytest runs with ``--import-mode=importlib``.
"""
