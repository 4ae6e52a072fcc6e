"""rtgate's migration checker: Preview (beta) → GA Realtime API.

``rtgate migrate check`` finds Preview-era code, configuration and dependency pins and
fixes what is safe (:mod:`rtgate.migrate.check`, rules in :mod:`rtgate.migrate.rules`);
``rtgate migrate probe`` verifies a live endpoint (:mod:`rtgate.migrate.probe`). The
command line is :func:`rtgate.migrate.cli.main`. Nothing heavy is imported here.
"""
