"""Zero-code rules: turn existing, untagged log statements into Bucket events.

A rule is a plain dict, so rules fit straight into a ``logging.config.dictConfig``
handler entry, an INI ``kwargs=`` line or a :class:`~bucket_logging.BucketProcessor`
keyword::

    LOGGING = {
        "version": 1,
        "handlers": {
            "bucket": {
                "class": "bucket_logging.BucketHandler",
                "tracking_key": "trCqx4DGo1lk3Lcct5NHLjWy",
                "rules": [
                    {"match": "User %s signed in", "event": "Signed in"},
                    {
                        "match": "Exported * rows",
                        "logger": "app.export*",
                        "event": "Exported data",
                        "attributes": ["format", "rows"],
                    },
                    {"match": "Report viewed", "event": "Viewed report", "attributes": "*"},
                ],
            },
        },
        "root": {"level": "INFO", "handlers": ["bucket"]},
    }

The keys of a rule:

``match`` (required)
    The message template to match: the unformatted ``record.msg`` of a stdlib
    record (``"User %s signed in"``, not the formatted line), or the ``event`` of a
    structlog event dict. Exact, or a case-sensitive glob when it contains ``*``,
    ``?`` or ``[`` (``"User * signed in"`` also matches the template above).
``event`` (required)
    The Bucket event name to send.
``logger`` (optional)
    The logger name, exact or glob (``"app.auth*"``). Any logger when absent.
``attributes`` (optional)
    A list of record / event-dict field names whose values become the event's
    attributes (missing fields are left out), or ``"*"`` for every structured
    field: the ``extra=`` fields of a stdlib record or the keys of a structlog
    event dict, without the standard record attributes, structlog's bookkeeping
    keys (``event``, ``timestamp``, ``level``, ``logger`` ...), the ids and the
    ``bucket_*`` tags.
``active`` (optional)
    ``True``/``False``: sent as ``context.active``.

Ids come from the record or the structlog context exactly as for tagged records.
Rules apply only to records without tags (``bucket_event``, ``bucket_user``,
``bucket_company``, ``bucket_feedback``); the first matching rule wins. A record's
``bucket_attributes`` and ``bucket_active`` still refine the rule's event.

Matching is cached per message template (and per logger name for templates some
rule matches), so the number of rules hardly changes the cost of an untagged
call; templates that are not strings never match.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Final

from .._exceptions import ConfigurationError

__all__ = ["ALL_ATTRIBUTES", "NO_RULES", "Rule", "RuleSet", "compile_rules"]

#: The ``attributes`` value meaning "every structured field".
ALL_ATTRIBUTES: Final = "*"

_KEYS: Final = frozenset({"match", "event", "logger", "attributes", "active"})
_GLOB_CHARS: Final = frozenset("*?[")

#: The cached candidates of a template no rule matches (compare with ``is``).
NO_RULES: Final[tuple[Rule, ...]] = ()

#: Most distinct templates (and template/logger pairs) remembered before the
#: caches start over; dynamic templates (f-strings) cannot grow memory forever.
MAX_CACHE: Final = 4096


def _compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """A compiled glob, or None when ``pattern`` is matched exactly."""
    if _GLOB_CHARS.isdisjoint(pattern):
        return None
    return re.compile(fnmatch.translate(pattern))


class Rule:
    """One compiled rule (see the module documentation for the format).

    Attributes:
        index: the rule's position in the configured list.
        match: the message template pattern.
        logger: the logger name pattern, or None for any logger.
        event: the Bucket event name.
        attributes: the field names to send as attributes, or None for none.
        all_attributes: whether every structured field is sent (``"*"``).
        active: the ``context.active`` value, or None.
    """

    __slots__ = (
        "_logger_re",
        "_match_re",
        "active",
        "all_attributes",
        "attributes",
        "event",
        "index",
        "logger",
        "match",
    )

    def __init__(
        self,
        index: int,
        match: str,
        event: str,
        *,
        logger: str | None = None,
        attributes: tuple[str, ...] | None = None,
        all_attributes: bool = False,
        active: bool | None = None,
    ) -> None:
        self.index = index
        self.match = match
        self.event = event
        self.logger = logger
        self.attributes = attributes
        self.all_attributes = all_attributes
        self.active = active
        self._match_re = _compile_pattern(match)
        self._logger_re = None if logger is None else _compile_pattern(logger)

    def __repr__(self) -> str:
        return f"<Rule #{self.index} {self.match!r} -> {self.event!r}>"

    def matches_template(self, template: str) -> bool:
        """Whether the message template (``record.msg`` / structlog ``event``) matches."""
        if self._match_re is None:
            return template == self.match
        return self._match_re.match(template) is not None

    def matches_logger(self, name: str) -> bool:
        """Whether the logger name matches (always true without a ``logger`` key)."""
        if self.logger is None:
            return True
        if self._logger_re is None:
            return name == self.logger
        return self._logger_re.match(name) is not None


def _describe(index: int, raw: object) -> str:
    try:
        text = repr(raw)
    except Exception:
        text = f"<{type(raw).__name__}>"
    if len(text) > 120:
        text = text[:117] + "..."
    return f"rule #{index} {text}"


def _compile_one(index: int, raw: object) -> Rule:
    where = _describe(index, raw)
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: a rule must be a dict, not {type(raw).__name__}")
    unknown = set(raw.keys()) - _KEYS
    if unknown:
        listed = ", ".join(sorted(str(k) for k in unknown))
        raise ConfigurationError(
            f"{where}: unknown key(s) {listed}; a rule takes {', '.join(sorted(_KEYS))}"
        )
    match = raw.get("match")
    if not isinstance(match, str) or not match:
        raise ConfigurationError(f"{where}: 'match' must be a non-empty string")
    event = raw.get("event")
    if not isinstance(event, str) or not event:
        raise ConfigurationError(f"{where}: 'event' must be a non-empty string (the event name)")
    logger = raw.get("logger")
    if logger is not None and (not isinstance(logger, str) or not logger):
        raise ConfigurationError(f"{where}: 'logger' must be a non-empty string")
    active = raw.get("active")
    if active is not None and type(active) is not bool:
        raise ConfigurationError(f"{where}: 'active' must be true or false")
    attrs = raw.get("attributes")
    attributes: tuple[str, ...] | None = None
    all_attributes = False
    if attrs == ALL_ATTRIBUTES:
        all_attributes = True
    elif attrs is not None:
        if isinstance(attrs, (str, Mapping)) or not isinstance(attrs, Iterable):
            raise ConfigurationError(
                f"{where}: 'attributes' must be a list of field names or '*', got {attrs!r:.60}"
            )
        names = tuple(attrs)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(
                    f"{where}: 'attributes' must hold field names (strings), got {name!r:.60}"
                )
        attributes = names or None
    return Rule(
        index,
        match,
        event,
        logger=logger,
        attributes=attributes,
        all_attributes=all_attributes,
        active=active,
    )


def compile_rules(rules: Iterable[object] | None) -> RuleSet | None:
    """Validate and compile configured rules; None when there are none.

    Raises :class:`~bucket_logging.ConfigurationError` naming the first bad rule.
    """
    if rules is None:
        return None
    if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Iterable):
        raise ConfigurationError(f"rules must be a list of rule dicts, not {type(rules).__name__}")
    compiled = [_compile_one(i, raw) for i, raw in enumerate(rules)]
    return RuleSet(compiled) if compiled else None


class RuleSet:
    """Compiled rules with the caches that keep lookups cheap."""

    __slots__ = ("_any_glob", "_by_pair", "_by_template", "_exact", "rules")

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._by_template: dict[str, tuple[Rule, ...]] = {}
        self._by_pair: dict[tuple[str, str], Rule | None] = {}
        # A template no rule matches (the usual case) costs one set look-up and one
        # regex match, however many rules there are (messages built with f-strings
        # are new templates every time).
        self._exact = frozenset(r.match for r in self.rules if r._match_re is None)
        globs = [r._match_re.pattern for r in self.rules if r._match_re is not None]
        self._any_glob = re.compile("|".join(f"(?:{g})" for g in globs)) if globs else None

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def template_cache(self) -> dict[str, tuple[Rule, ...]]:
        """Template -> candidate rules (:data:`NO_RULES` when none); cleared in place.

        Front ends read it directly to skip records whose template is known to
        match no rule, without a call.
        """
        return self._by_template

    def __repr__(self) -> str:
        return f"<RuleSet of {len(self.rules)} rule(s)>"

    def lookup(self, template: object, logger_name: str) -> Rule | None:
        """The first rule matching ``template`` and ``logger_name``, or None."""
        if type(template) is not str:
            if not isinstance(template, str):
                return None
            template = str(template)
        candidates = self._by_template.get(template)
        if candidates is None:
            any_glob = self._any_glob
            if template in self._exact or (
                any_glob is not None and any_glob.match(template) is not None
            ):
                candidates = tuple(r for r in self.rules if r.matches_template(template))
            else:
                candidates = NO_RULES
            cache = self._by_template
            if len(cache) < MAX_CACHE:  # full: keep the templates seen first
                cache[template] = candidates
        if not candidates:
            return None
        key = (template, logger_name)
        try:
            return self._by_pair[key]
        except KeyError:
            pass
        found = None
        for rule in candidates:
            if rule.matches_logger(logger_name):
                found = rule
                break
        pairs = self._by_pair
        if len(pairs) < MAX_CACHE:
            pairs[key] = found
        return found
