"""What a web page open in a browser may do through the relay: nothing, unless allowed.

Without ``--token`` (the default on loopback), any page could otherwise post events
through the relay in the app's name: a form (``enctype=text/plain``), a ``fetch`` with
a body that needs no CORS preflight, or a site whose name is rebound to 127.0.0.1.
:class:`BrowserRules` refuses each, before the body is read:

* **Origin**: a request carrying an ``Origin`` header (every browser ``POST`` does), or
  a ``Sec-Fetch-Site`` other than ``none``, is refused (403) unless its origin is one
  of ``--allow-origin``. Pipelines, SDKs and OpenTelemetry exporters send neither.
* **Host**: while the relay listens on a loopback address, the ``Host`` header must
  name an address or a loopback name (the rule of ``serve``'s page:
  :func:`~bucket_logging._runtime.diagnostics.named_locally`), or one of
  ``--allow-host`` (a reverse proxy on the same machine that passes its own name on).
* **Content type** of the JSON intake (``POST /``): only JSON and the NDJSON types
  pipelines send (:data:`JSON_TYPES`); the types a form or a simple ``fetch`` may send
  without a preflight (``text/plain``, form encodings) and none at all are refused
  (415). ``/v1/logs`` takes only protobuf and JSON already.

May import: the process layer (the Host rule), the relay's bodies (its refusals).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from .._runtime.diagnostics import named_locally
from .bodies import Refused

__all__ = ["JSON_TYPES", "BrowserRules", "media_type"]

#: The media types the JSON intake takes: JSON (Vector's ``json`` codec, Fluent Bit's
#: ``json``, Logstash's ``json``/``json_batch``, syslog-ng with the documented header)
#: and newline-delimited JSON under the names pipelines give it (Vector's
#: ``newline_delimited`` framing and Fluent Bit's ``json_lines`` send
#: ``application/x-ndjson``).
JSON_TYPES: Final = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "application/json-lines",
        "application/json-seq",
    }
)


def media_type(content_type: str) -> str:
    """A ``Content-Type``'s media type, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


class BrowserRules:
    """The relay's rules for requests a browser can make (see the module documentation).

    Args:
        bound: the interface the relay listens on (None: not known, no Host rule).
        allow_origins: origins whose requests are taken (``https://app.example``).
        allow_hosts: ``Host`` names taken besides addresses and loopback names.
    """

    def __init__(
        self,
        bound: str | None = None,
        allow_origins: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
    ) -> None:
        self.bound = bound
        self.allow_origins = frozenset(o.strip().rstrip("/").lower() for o in allow_origins)
        self.allow_hosts = frozenset(h.strip().lower() for h in allow_hosts)

    def bound_to(self, host: str) -> BrowserRules:
        """The same rules for a relay listening on ``host``."""
        return BrowserRules(host, self.allow_origins, self.allow_hosts)

    def check(self, headers: Mapping[bytes, bytes]) -> None:
        """Raise :class:`Refused` (403) for a request these rules do not take."""
        origin = headers.get(b"origin")
        site = headers.get(b"sec-fetch-site", b"").strip().lower()
        if origin is not None or site not in (b"", b"none"):
            shown = (origin or b"").decode("latin-1").strip().rstrip("/").lower()
            if shown not in self.allow_origins:
                raise Refused(
                    403,
                    "a request from a web page (Origin or Sec-Fetch-Site) is refused: "
                    "allow its origin with --allow-origin",
                )
        host = headers.get(b"host")
        if self.bound is not None and host is not None:
            name = host.decode("latin-1").strip().lower()
            if (
                not named_locally(name, self.bound)
                and (name.rsplit(":", 1)[0] if not name.endswith("]") else name)
                not in self.allow_hosts
            ):
                raise Refused(
                    403,
                    "the Host header names neither an address nor localhost (a site "
                    "rebound to 127.0.0.1?): allow a proxy's name with --allow-host",
                )

    @staticmethod
    def check_json_type(content_type: str) -> None:
        """Raise :class:`Refused` (415) unless ``content_type`` is one of :data:`JSON_TYPES`."""
        if media_type(content_type) not in JSON_TYPES:
            raise Refused(
                415,
                f"Content-Type {content_type[:60]!r} is not JSON: send application/json "
                "or application/x-ndjson",
            )
