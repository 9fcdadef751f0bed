"""Layer 7, the command line: ``bucket-logging serve | check | ship | relay``.

Holds the argument parsing (:mod:`.main`), ``check`` (:mod:`.check`), ``ship`` and the
log files it follows (:mod:`.ship`, :mod:`.logfiles`), and ``relay``: its limits and
sender (:mod:`.relay`), the request bodies of log pipelines (:mod:`.bodies`), its ASGI
app (:mod:`.relay_app`), uvicorn's protocol and server with the relay's bounds
(:mod:`.relay_server`) and its command with ``--workers`` (:mod:`.relay_cli`); the last
three need the ``relay`` extra. Never imported by ``import bucket_logging``.

May import: every layer below it.
"""
