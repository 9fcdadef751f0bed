"""Layer 3, the on-disk spool's store: batches in one SQLite file.

Holds the store (:mod:`.store`: claims with leases, transactions), the row format
(:mod:`.rows`) and the upkeep (:mod:`.upkeep`: the size limit, eviction, owners, file
checks). It knows nothing of requests or of the sender's scheduling: the sender
(:mod:`bucket_logging._sender.spooling`) persists, claims and settles batches through it.

May import: :mod:`bucket_logging._items`, :mod:`bucket_logging._runtime`,
:mod:`bucket_logging._exceptions`.
"""
