"""JSON log lines for CloudWatch, built on structlog and the stdlib ``logging`` module.

Every record becomes one JSON object per line: lines from :func:`get_logger` (structlog bound
loggers) and "foreign" stdlib records (uvicorn, botocore, your own ``logging.getLogger``) go
through the same renderer, so the fields are the same whoever logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final

import structlog

from stalwart.observability._context import CORRELATION_ID, context_view, debug_sampled
from stalwart.observability._redact import DEFAULT_SECRET_KEYS, Redactor
from stalwart.observability._trace_ids import current_trace_ids, xray_trace_id

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from structlog.typing import EventDict, Processor

# werkzeug gives its logger a colouring handler of its own when it first logs with no handler
# configured yet (a dev server started before configure_logging).
DEFAULT_TAKE_OVER: Final = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "werkzeug",
)

_METHOD_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_LEVEL_NAMES: Final = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
# Attributes every LogRecord has; anything else on a foreign record came from ``extra=``
# (except the few listed here that libraries add for their own formatters).
_RECORD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    # uvicorn passes its message again with ANSI colours, for its own coloured formatter.
    "color_message",
}
# CSI sequences (colours, bold): werkzeug colours its request lines, even when not on a tty.
_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RESERVED: Final = frozenset(
    {"timestamp", "level", "message", "logger", "service", CORRELATION_ID, "event"}
)


class _Rendered(str):
    """A line already rendered by the structlog path; the formatter passes it through."""

    __slots__ = ()


_ts_cache: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds; the seconds prefix is cached because it rarely changes."""
    global _ts_cache  # noqa: PLW0603 - a tuple swap is atomic; a stale read only costs a strftime
    whole = int(created)
    millis = int((created - whole) * 1000)
    cached_second, prefix = _ts_cache
    if cached_second != whole:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _ts_cache = (whole, prefix)
    return f"{prefix}.{millis:03d}Z"


def _json_default(value: Any) -> Any:
    # Never fail a log line on an unserialisable value: fall back to its repr-ish string.
    return str(value)


def _exception_fields(exc_info: Any) -> dict[str, str] | None:
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[1] is None:
        return None
    exc_type, exc, tb = exc_info
    return {
        "type": f"{exc_type.__module__}.{exc_type.__qualname__}"
        if exc_type.__module__ != "builtins"
        else exc_type.__qualname__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(exc_type, exc, tb)),
    }


@dataclass(frozen=True, slots=True)
class _Renderer:
    service: str
    redactor: Redactor
    processors: tuple[Processor, ...]

    def render(
        self,
        event: EventDict,
        logger_name: str,
        level: int,
        created: float,
        method_name: str,
    ) -> str:
        message = _message(event)
        exc_info = event.pop("exc_info", None)
        context = context_view()
        line: dict[str, Any] = {
            "timestamp": _timestamp(created),
            "level": _LEVEL_NAMES.get(level) or logging.getLevelName(level),
            "message": message,
            "logger": logger_name,
            "service": self.service,
            # A correlation id bound on the logger itself wins over the request's.
            CORRELATION_ID: event.pop(CORRELATION_ID, None) or context.get(CORRELATION_ID),
        }
        ids = current_trace_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
            line["xray_trace_id"] = xray_trace_id(ids[0])
        if exc_info:
            fields = _exception_fields(exc_info)
            if fields is not None:
                line["exception"] = fields
        if context:
            line.update({k: v for k, v in context.items() if k not in _RESERVED})
        line.update({k: v for k, v in event.items() if k not in _RESERVED})
        if self.processors:
            line = self._run_processors(line, logger_name, method_name)
        return json.dumps(self.redactor.mapping(line), default=_json_default, ensure_ascii=False)

    def _run_processors(
        self, line: dict[str, Any], logger_name: str, method_name: str
    ) -> dict[str, Any]:
        target = logging.getLogger(logger_name)
        for processor in self.processors:
            result = processor(target, method_name, line)
            if not isinstance(result, dict):
                raise TypeError(f"log processor {processor!r} must return a dict")
            line = result
        return line


def _message(event: EventDict) -> str:
    message = event.pop("event", "")
    args = event.pop("positional_args", None)
    if args:
        message = str(message) % args
    return message if isinstance(message, str) else str(message)


_renderer = _Renderer("unknown", Redactor(), ())


class JsonFormatter(logging.Formatter):
    """Formats any stdlib record as the stalwart JSON line (for handlers you build yourself).

    >>> import logging
    >>> handler = logging.StreamHandler()
    >>> handler.setFormatter(JsonFormatter())
    """

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        if type(msg) is _Rendered:
            return msg
        event: EventDict = {"event": _ANSI_ESCAPE.sub("", record.getMessage())}
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS:
                event[key] = value
        if record.exc_info:
            event["exc_info"] = record.exc_info
        return _renderer.render(
            event, record.name, record.levelno, record.created, record.levelname.lower()
        )


class _Emitter:
    """What structlog wraps: hands the rendered line to the stdlib logger of the same name."""

    __slots__ = ("logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.logger = logging.getLogger(name)

    def _emit(self, level: int, line: str) -> None:
        # The level was checked before rendering (and may have been lifted by debug
        # sampling), so go straight to ``handle`` instead of ``Logger.log``'s own check.
        record = logging.LogRecord(self.name, level, "", 0, _Rendered(line), None, None)
        self.logger.handle(record)

    def debug(self, line: str) -> None:
        self._emit(logging.DEBUG, line)

    def info(self, line: str) -> None:
        self._emit(logging.INFO, line)

    def warning(self, line: str) -> None:
        self._emit(logging.WARNING, line)

    warn = warning

    def error(self, line: str) -> None:
        self._emit(logging.ERROR, line)

    exception = error

    def critical(self, line: str) -> None:
        self._emit(logging.CRITICAL, line)

    fatal = critical

    def __getattr__(self, name: str) -> Any:
        # structlog's stdlib BoundLogger proxies attributes such as ``handlers``.
        return getattr(self.logger, name)


def _render_processor(logger: Any, method_name: str, event: EventDict) -> str:
    return _renderer.render(
        event, logger.name, _METHOD_LEVELS.get(method_name, logging.INFO), time.time(), method_name
    )


class Logger(structlog.stdlib.BoundLogger):
    """A structlog stdlib-style bound logger whose level is that of the stdlib logger of the
    same name (checked before any work, so disabled levels cost almost nothing)."""

    def _proxy_to_logger(
        self,
        method_name: str,
        event: str | None = None,
        *event_args: str,
        **event_kw: Any,
    ) -> Any:
        level = _METHOD_LEVELS.get(method_name, logging.INFO)
        emitter: _Emitter = self._logger  # type: ignore[assignment]
        if not emitter.logger.isEnabledFor(level) and not (
            level == logging.DEBUG and debug_sampled()
        ):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


_PROCESSORS: Final[list[Processor]] = [_render_processor]


def get_logger(name: str = "app", **initial_values: Any) -> Logger:
    """A JSON logger named ``name`` (levels follow ``logging.getLogger(name)``).

    It can be created at import time, before :func:`configure_logging`.

    >>> log = get_logger("orders", component="api")
    >>> log.name
    'orders'
    """
    return Logger(_Emitter(name), _PROCESSORS, initial_values)


def configure_logging(
    service: str,
    *,
    level: int | str = logging.INFO,
    levels: Mapping[str, int | str] | None = None,
    stream: IO[str] | None = None,
    redact_keys: Iterable[str] = DEFAULT_SECRET_KEYS,
    processors: Sequence[Processor] = (),
    take_over: Iterable[str] = DEFAULT_TAKE_OVER,
) -> logging.Handler:
    """Make every log record in the process one JSON line on ``stream`` (stdout by default).

    Replaces the root logger's handlers with one JSON handler; loggers named in ``take_over``
    (uvicorn's, gunicorn's) lose their own handlers and propagate to it. ``levels`` sets levels
    per logger name, e.g. ``{"botocore": "WARNING"}``. ``processors`` are structlog processors
    run on every line before redaction (they enrich; they cannot drop lines). Returns the
    handler it installed.

    >>> import io, json
    >>> out = io.StringIO()
    >>> _ = configure_logging("billing", stream=out)
    >>> get_logger("demo").info("charged", amount=3, password="hunter2")
    >>> line = json.loads(out.getvalue())
    >>> line["message"], line["service"], line["amount"], line["password"]
    ('charged', 'billing', 3, '[REDACTED]')
    """
    global _renderer  # noqa: PLW0603 - configuration is replaced whole, once, at start-up
    _renderer = _Renderer(service, Redactor(tuple(redact_keys)), tuple(processors))
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    global _taken_over  # noqa: PLW0603 - replaced whole with the configuration
    _taken_over = tuple(take_over)
    reclaim_loggers()
    for name, logger_level in (levels or {}).items():
        logging.getLogger(name).setLevel(logger_level)
    return handler


_taken_over: tuple[str, ...] = ()


def reclaim_loggers() -> None:
    """Take the loggers named in :func:`configure_logging`'s ``take_over`` back: drop the
    handlers they gained since and let them propagate to the JSON handler again.

    A server that configures its logging after ``configure_logging`` ran (``uvicorn.Config``
    applies its ``log_config`` with ``dictConfig``, re-attaching its own handlers) would
    otherwise print its lines as plain, coloured text; the FastAPI web kit calls this at
    lifespan startup. Does nothing before ``configure_logging``. A logger left with no handler
    and not propagating was silenced on purpose (uvicorn's ``access_log=False``) and stays so.

    >>> reclaim_loggers()
    """
    for name in _taken_over:
        taken = logging.getLogger(name)
        if not taken.handlers and not taken.propagate:
            continue
        for existing in list(taken.handlers):
            taken.removeHandler(existing)
        taken.propagate = True


class _CaptureHandler(logging.Handler):
    def __init__(self, lines: list[dict[str, Any]]) -> None:
        super().__init__(logging.NOTSET)
        self.lines = lines
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def capture_logs(
    logger: str = "", *, level: int | str | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Collect the JSON lines logged under ``logger`` (root by default) as parsed dicts.

    For tests: lines are rendered exactly as in production (redaction included). ``level``
    lowers (or raises) that logger's level for the duration of the block.

    >>> with capture_logs() as lines:
    ...     get_logger("demo").warning("low stock", sku="A1")
    >>> lines[0]["message"], lines[0]["sku"]
    ('low stock', 'A1')
    """
    lines: list[dict[str, Any]] = []
    handler = _CaptureHandler(lines)
    target = logging.getLogger(logger)
    saved_level = target.level
    if level is not None:
        target.setLevel(level)
    target.addHandler(handler)
    try:
        yield lines
    finally:
        target.removeHandler(handler)
        target.setLevel(saved_level)
