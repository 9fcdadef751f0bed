"""Layer 7, the command line: ``bucket-logging serve | check | ship | relay``.

Holds the argument parsing (:mod:`.main`), ``check`` (:mod:`.check`), ``ship`` and the
log files it follows (:mod:`.ship`, :mod:`.logfiles`), and ``relay`` with the request
bodies of log pipelines (:mod:`.relay`, :mod:`.bodies`). Never imported by
``import bucket_logging``.

May import: every layer below it.
"""
