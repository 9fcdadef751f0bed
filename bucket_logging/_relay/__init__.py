"""``bucket-logging relay``: an HTTP intake for log pipelines (Vector, Fluent Bit, Logstash).

    $ BUCKET_RELAY_TOKEN=s3cret bucket-logging relay --port 8788

A pipeline's HTTP output posts batches of log events; each event is a JSON object
read by :class:`~bucket_logging._frontends.jsonlines.JsonLines` (the same tags, ids, rules and
timestamps as ``bucket-logging ship``). Bodies may be a JSON array, newline-delimited
JSON or one JSON object, optionally ``Content-Encoding: gzip``.

Answers:

* **200** once every item of the batch was accepted by the sender (queued; with a
  spool the sender writes it to disk within a flush interval);
* **503** with ``Retry-After`` when the sender holds more than ``--max-pending`` items
  (checked before anything of the batch is queued), when the sender refused an item
  anyway, when ``--max-concurrent`` requests are already being served, when the
  requests in progress hold ``--max-objects`` JSON values, and while the relay is
  stopping: the pipeline keeps the batch in its own buffer and retries;
* **400** for a body that is not JSON (or a malformed request: h11 refuses a bad or
  conflicting ``Content-Length``), **401** without the right token, **405** for
  other methods (``GET`` answers ``/health`` only), **411** without a
  ``Content-Length`` or a chunked body, **413** for a body over ``--max-body`` bytes
  as sent or over ``--max-decoded`` bytes once decompressed, or a batch that can
  never fit (more values than ``--max-objects``, more events than
  ``--max-pending``), **415** for an encoding other than gzip.

``POST /v1/logs`` takes OTLP/HTTP logs exports (see :mod:`bucket_logging._relay.app`).

Where items go (key, URL, spool) comes only from the relay's own options and
environment, never from a request. Besides the optional spool the relay keeps no
state, so several can run behind a load balancer (or ``--workers N`` processes share
one port, each with its own sender).

``SIGTERM`` (or ``SIGINT``) drains: the listening socket is closed, idle connections
are closed, requests in progress are answered, then the sender delivers what it
holds within its ``shutdown_timeout`` (or leaves it in the spool) before the relay
exits.

Layer 7, the relay: a network service, below the command line and above the front
ends. Its modules, from the bottom up:

* :mod:`.limits` (the bounds) and :mod:`.sender` (the sender wrapper that learns which
  items of a request were refused) and :mod:`.bodies` (the bodies pipelines post,
  decompressed and counted within bounds): no uvicorn, so the command line may import
  them without the ``relay`` extra;
* :mod:`.app`: the ASGI application and its bounds;
* :mod:`.server`: uvicorn's h11 protocol with the connection cap and deadlines, the
  server whose SIGTERM drains, the listening socket;
* :mod:`.serve` (one process, or ``--workers N`` forked ones) and :mod:`.inprocess`
  (:class:`~bucket_logging._relay.inprocess.Relay`, served on a thread).

The last three need the ``relay`` extra (uvicorn: ``pip install 'bucket-logging[relay]'``);
nothing here parses arguments (that is :mod:`bucket_logging._cli.relay`).

May import: the front ends and every layer below them; uvicorn (only from :mod:`.server`
and the modules above it). Imported only by the command line, never by
``import bucket_logging``.
"""
