"""Layer 8, the command line: ``bucket-logging serve | check | ship | relay``.

Holds the argument parsing (:mod:`.main`), ``check`` (:mod:`.check`), ``ship`` and the
log files it follows (:mod:`.ship`, :mod:`.logfiles`), and ``relay``'s options
(:mod:`.relay`: the service itself is the relay layer, :mod:`bucket_logging._relay`).
Never imported by ``import bucket_logging``.

May import: every layer below it.
"""
