"""A local stand-in for the read side of Stripe's API, serving a `StripeWorld`.

    GET /v1/events            newest first; limit, starting_after, ending_before, created[...], type (with *), types[]
    GET /v1/customers         newest first; limit, cursors, created[...]; deleted customers are not listed
    GET /v1/subscriptions     ... plus customer, status (default: everything but canceled; `all`, `ended`, a status)
    GET /v1/invoices          ... plus customer, status
    GET /v1/<those>/<id>      one object; an event older than the retention window is gone

Everything is serialised to JSON bytes once, when it is loaded or put; every list is kept sorted by
(created, id), so a page is a bisect, a slice and a join. Events older than `retention_days` before
`world_now` are neither listed nor retrievable, as Stripe keeps 30 days.

Errors are Stripe-shaped, `{"error": {"type": "invalid_request_error", "message", "code"?, "param"?}}`:

    401  no key, or not the key the stand-in was started with
    400  a bad parameter: unknown name, limit outside 1..100, a non-integer, both cursors,
         type with types, a cursor naming nothing (code resource_missing)
    404  an unknown id (code resource_missing), or a URL or method the stand-in does not serve
    500  (type api_error) a bug in the stand-in; the traceback goes to stderr

One module rather than an index module plus an HTTP module: the index exists only to serve these
pages, and reading the two together is how one checks the Stripe semantics.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import mmap
import re
import socket
import sys
import threading
import traceback
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from simulation.stripe_world import StripeWorld

DAY = 86_400
Key = tuple[int, str]  # (created, id); lists hold keys ascending and serve them from the top
Accept = frozenset | Callable[[Any], bool]  # which values of an indexed field a list request keeps

_NOUN = {"events": "event", "customers": "customer", "subscriptions": "subscription", "invoices": "invoice"}
_KINDS = {**{k: k for k in _NOUN}, **{v: k for k, v in _NOUN.items()}}
_COMMON = frozenset({"limit", "starting_after", "ending_before", "created"})
_PARAMS = {
    "events": _COMMON | {"type", "types"},
    "customers": _COMMON,
    "subscriptions": _COMMON | {"customer", "status"},
    "invoices": _COMMON | {"customer", "status"},
}
_BRACKETED = re.compile(r"([a-z_]+)\[([a-z0-9_]*)\]")
_OPS = {"gt", "gte", "lt", "lte"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        error: dict[str, Any] = {"type": type, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            error["param"] = param
        self.status, self.body = status, orjson.dumps({"error": error})

    @classmethod
    def no_such(cls, noun: str, oid: str, *, status: int, param: str) -> ApiError:
        return cls(status, f"No such {noun}: '{oid}'", code="resource_missing", param=param)


def _customer_of(obj: dict) -> str | None:
    customer = obj.get("customer")
    return customer.get("id") if isinstance(customer, dict) else customer


_FIELDS: dict[str, dict[str, Callable[[dict], Any]]] = {  # secondary indexes, most selective first
    "events": {"type": lambda e: e["type"]},
    "customers": {},
    "subscriptions": {"customer": _customer_of, "status": lambda s: s.get("status")},
    "invoices": {"customer": _customer_of, "status": lambda i: i.get("status")},
}


@dataclass(frozen=True)
class ListQuery:
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    low: tuple = ()  # inclusive lower bound on the key; () is below every key
    high: tuple | None = None  # exclusive upper bound
    where: dict[str, Accept] = field(default_factory=dict)


class Collection:
    """One resource: JSON bytes by id, and its listed members' keys sorted overall and per field value."""

    def __init__(self, kind: str):
        self.noun = _NOUN[kind]
        self.fields = _FIELDS[kind]
        self.blobs: dict[str, bytes | tuple[int, int]] = {}  # JSON, or (offset, length) in the mapped file
        self._file: mmap.mmap | None = None
        self.listed: dict[str, tuple[Key, dict[str, Any]]] = {}
        self.all: list[Key] = []
        self.by: dict[str, dict[Any, list[Key]]] = {f: {} for f in self.fields}

    def load(self, items: list[dict], source: str) -> None:
        bodies: dict[str, dict] = {}
        for item in items:
            oid = item["id"]
            if oid in bodies and bodies[oid] != item:
                raise ValueError(f"{source}: two different bodies under one id {oid!r}")
            bodies[oid] = item
        entries = []
        for oid, item in bodies.items():
            self.blobs[oid] = orjson.dumps(item)
            if not item.get("deleted"):
                entries.append((self._key(item, source), oid, self._values(item)))
        self._index(entries)

    def load_file(self, path: Path, source: str, *, since: int | None = None) -> None:
        """`load` streamed from a JSONL file: only each object's keys and indexed fields are held,
        its JSON is read from the (memory-mapped) file when served. Items created before `since`
        (events past the retention window, never served) are not held at all."""
        self._file = _mapped(path)
        entries, offset = [], 0
        with path.open("rb") as lines:
            for line in lines:
                start, offset = offset, offset + len(line)
                body = line.rstrip(b"\n")
                if not body.strip():
                    continue
                item = orjson.loads(body)
                if since is not None and isinstance(item.get("created"), int) and item["created"] < since:
                    continue
                oid = item["id"]
                if oid in self.blobs:
                    if orjson.loads(self.blob(oid)) != item:
                        raise ValueError(f"{source}: two different bodies under one id {oid!r}")
                    continue
                self.blobs[oid] = (start, len(body))
                if not item.get("deleted"):
                    entries.append((self._key(item, source), oid, self._values(item)))
        self._index(entries)

    def _index(self, entries: list) -> None:
        """Lists the (key, id, indexed values) of the objects loaded, in key order."""
        entries.sort()
        for key, oid, values in entries:
            self.listed[oid] = (key, values)
            self.all.append(key)
            for f, v in values.items():
                self.by[f].setdefault(v, []).append(key)

    def blob(self, oid: str) -> bytes:
        held = self.blobs[oid]
        if isinstance(held, bytes):
            return held
        start, length = held
        assert self._file is not None
        return self._file[start:start + length]

    def put(self, item: dict) -> None:
        oid = item["id"]
        key = None if item.get("deleted") else self._key(item, f"put {self.noun}")
        blob = orjson.dumps(item)
        old = self.listed.pop(oid, None)
        if old is not None:
            _remove(self.all, old[0])
            for f, v in old[1].items():
                _remove(self.by[f][v], old[0])
        self.blobs[oid] = blob
        if key is not None:
            values = self._values(item)
            self.listed[oid] = (key, values)
            insort(self.all, key)
            for f, v in values.items():
                insort(self.by[f].setdefault(v, []), key)

    def created(self, oid: str) -> int | None:
        entry = self.listed.get(oid)
        return None if entry is None else entry[0][0]

    def page(self, q: ListQuery) -> tuple[list[bytes], bool]:
        """The page `q` asks for, newest first, and whether more lie beyond it in the paging direction."""
        cursor_id = q.starting_after or q.ending_before
        cursor: Key | None = None
        if cursor_id is not None:
            if cursor_id not in self.listed:
                param = "starting_after" if q.starting_after else "ending_before"
                raise ApiError.no_such(self.noun, cursor_id, status=400, param=param)
            cursor = self.listed[cursor_id][0]
        bases, rest = self._plan(q.where)
        newer = q.ending_before is not None
        want = q.limit + 1
        found: list[Key] = []
        for keys in bases:
            lo = bisect_left(keys, q.low)
            hi = len(keys) if q.high is None else bisect_left(keys, q.high)
            if cursor is not None and newer:
                lo = max(lo, bisect_right(keys, cursor))
            elif cursor is not None:
                hi = min(hi, bisect_left(keys, cursor))
            found.extend(self._walk(keys, lo, hi, want, newer, rest))
        if len(bases) > 1:
            found.sort(reverse=not newer)
            del found[want:]
        page = found[: q.limit]
        if newer:
            page.reverse()
        return [self.blob(oid) for _, oid in page], len(found) > q.limit

    def _plan(self, where: dict[str, Accept]) -> tuple[list[list[Key]], dict[str, Accept]]:
        """Which sorted lists to walk, and which conditions remain to check item by item."""
        if not where:
            return [self.all], {}
        chosen = next((f for f in self.fields if isinstance(where.get(f), frozenset)), None)
        chosen = chosen or next(f for f in self.fields if f in where)
        accept, index = where[chosen], self.by[chosen]
        if isinstance(accept, frozenset):
            bases = [index[v] for v in accept if v in index]
        else:
            bases = [keys for v, keys in index.items() if accept(v)]
        return bases, {f: a for f, a in where.items() if f != chosen}

    def _walk(self, keys: list[Key], lo: int, hi: int, want: int, ascending: bool,
              rest: dict[str, Accept]) -> list[Key]:
        if not rest:
            return keys[lo:min(hi, lo + want)] if ascending else keys[max(lo, hi - want):hi][::-1]
        taken: list[Key] = []
        for i in range(lo, hi) if ascending else range(hi - 1, lo - 1, -1):
            values = self.listed[keys[i][1]][1]
            if all(_accepts(a, values[f]) for f, a in rest.items()):
                taken.append(keys[i])
                if len(taken) == want:
                    break
        return taken

    def _key(self, item: dict, source: str) -> Key:
        created = item.get("created")
        if not isinstance(created, int):
            raise ValueError(f"{source}: {self.noun} {item.get('id')!r} has no integer 'created'")
        if self.noun == "event" and not isinstance(item.get("type"), str):
            raise ValueError(f"{source}: event {item.get('id')!r} has no 'type'")
        return created, item["id"]

    def _values(self, item: dict) -> dict[str, Any]:
        return {f: get(item) for f, get in self.fields.items()}


def _mapped(path: Path) -> mmap.mmap | None:
    with path.open("rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else None


def _accepts(accept: Accept, value: Any) -> bool:
    return value in accept if isinstance(accept, frozenset) else accept(value)


def _remove(keys: list[Key], key: Key) -> None:
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]


class StripeStandIn:
    """Serves a StripeWorld on http://host:port until stopped; safe to change while it serves."""

    def __init__(self, world: StripeWorld | Path, *, api_key: str, retention_days: int = 30,
                 host: str = "127.0.0.1", port: int = 0):
        """`world` in memory, or a world directory (stripe_world.py), streamed: the stand-in then holds
        only keys and indexed fields, not the objects, and no event past the retention window."""
        self.world_now = world.now if isinstance(world, StripeWorld) else \
            int(orjson.loads((Path(world) / "meta.json").read_bytes())["now"])
        self.retention_days = retention_days
        self._api_key = api_key.encode()
        self._address = (host, port)
        self._lock = threading.Lock()
        self._collections = {kind: Collection(kind) for kind in _NOUN}
        for kind, collection in self._collections.items():
            if isinstance(world, StripeWorld):
                collection.load(getattr(world, kind), f"world {kind}")
            elif (Path(world) / f"{kind}.jsonl").exists():
                collection.load_file(Path(world) / f"{kind}.jsonl", f"world {kind}",
                                     since=self._retention_cutoff() if kind == "events" else None)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._request_ids = itertools.count(1)
        self._unanswered: tuple[str, threading.Event | None] | None = None
        self.unanswered_requests = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("the Stripe stand-in is already running")
        self._server = _Server(self._address, _Handler, standin=self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stripe-standin", daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Stripe stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StripeStandIn:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- simulated Stripe activity -----------------------------------------------------------
    def add_event(self, event: dict) -> None:
        """Add an event, or replace the one with its id; where `created` puts it in the list."""
        with self._lock:
            self._collections["events"].put(event)

    def put_object(self, kind: str, obj: dict) -> None:
        """Add or replace a customer, subscription or invoice (kind plural or singular)."""
        plural = _KINDS.get(kind)
        if plural is None or plural == "events":
            raise ValueError(f"put_object: unknown kind {kind!r} (customers, subscriptions, invoices)")
        with self._lock:
            self._collections[plural].put(obj)

    def leave_unanswered(self, path_prefix: str | None, *, until: threading.Event | None = None) -> None:
        """A network failure (None ends it): a request whose path starts with `path_prefix` gets no
        answer and its connection is closed, which the stripe client raises as APIConnectionError;
        with `until`, the request first hangs until that is set. `unanswered_requests` counts them."""
        self._unanswered = None if path_prefix is None else (path_prefix, until)

    def unanswered(self, path: str) -> threading.Event | bool:
        """Whether a request for `path` is to be left unanswered (and the event it waits for first)."""
        fault = self._unanswered
        if fault is None or not path.startswith(fault[0]):
            return False
        self.unanswered_requests += 1
        return fault[1] or True

    # -- the API -----------------------------------------------------------------------------
    def respond(self, method: str, target: str, authorization: str | None) -> tuple[int, bytes]:
        """The status and JSON body Stripe would answer `method target` with."""
        try:
            self._authenticate(authorization)
            url = urlsplit(target)
            parts = url.path.split("/")
            if method != "GET" or len(parts) not in (3, 4) or parts[:2] != ["", "v1"] or parts[2] not in _NOUN:
                raise ApiError(404, f"Unrecognized request URL ({method}: {url.path}). The Stripe stand-in "
                                    "serves GET /v1/{events,customers,subscriptions,invoices}[/id].")
            if len(parts) == 4:
                return 200, self._retrieve(parts[2], unquote(parts[3]))
            return 200, self._list(parts[2], url.query)
        except ApiError as e:
            return e.status, e.body
        except Exception as e:  # a bug here must reach the client as Stripe's 500, not a hung socket
            traceback.print_exc(file=sys.stderr)
            error = ApiError(500, f"stripe stand-in: {type(e).__name__}: {e}", type="api_error")
            return error.status, error.body

    def next_request_id(self) -> str:
        return f"req_standin{next(self._request_ids):08d}"

    def _authenticate(self, authorization: str | None) -> None:
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        key = None
        if scheme.lower() == "bearer":
            key = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                key = None
        if not key:
            raise ApiError(401, "You did not provide an API key. You need to provide your API key in the "
                                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                                "YOUR_SECRET_KEY').")
        if not hmac.compare_digest(key.encode(), self._api_key):
            raise ApiError(401, f"Invalid API Key provided: {_mask(key)}")

    def _retention_cutoff(self) -> int:
        return self.world_now - self.retention_days * DAY

    def _retrieve(self, kind: str, oid: str) -> bytes:
        collection = self._collections[kind]
        with self._lock:
            blob = collection.blob(oid) if oid in collection.blobs else None
            created = collection.created(oid)
        if blob is None or (kind == "events" and (created is None or created < self._retention_cutoff())):
            raise ApiError.no_such(collection.noun, oid, status=404, param="id")
        return blob

    def _list(self, kind: str, query: str) -> bytes:
        collection, q = self._collections[kind], self._query(kind, query)
        with self._lock:
            blobs, has_more = collection.page(q)
        return b"".join((b'{"object":"list","data":[', b",".join(blobs), b'],"has_more":',
                         b"true" if has_more else b"false", b',"url":"/v1/', kind.encode(), b'"}'))

    def _query(self, kind: str, query: str) -> ListQuery:
        scalars: dict[str, str] = {}
        created: dict[str, str] = {}
        types: list[str] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            bracketed = _BRACKETED.fullmatch(name)
            base, sub = bracketed.groups() if bracketed else (name, None)
            if base not in _PARAMS[kind] or (sub is not None and base not in ("created", "types")):
                raise ApiError(400, f"Received unknown parameter: {name}", param=name)
            if base == "types":
                types.append(value)
            elif base == "created" and sub is not None:
                if sub not in _OPS:
                    raise ApiError(400, f"Received unknown parameter: {name}", param=name)
                created[sub] = value
            else:
                scalars[base] = value
        limit = _integer(scalars.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
            raise ApiError(400, f"This value must be {bound}.", param="limit")
        if "starting_after" in scalars and "ending_before" in scalars:
            raise ApiError(400, "You may only specify one of these parameters: ending_before, starting_after.",
                           param="ending_before")
        low, high = _created_bounds(scalars.get("created"), created)
        if kind == "events":
            low = max(low, (self._retention_cutoff(),))
        return ListQuery(limit=limit, starting_after=scalars.get("starting_after") or None,
                         ending_before=scalars.get("ending_before") or None, low=low, high=high,
                         where=_where(kind, scalars, types))


def _integer(text: str, param: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"Invalid integer: {text}", param=param) from None


def _created_bounds(exact: str | None, ops: dict[str, str]) -> tuple[tuple, tuple | None]:
    if exact is not None:
        ops = {**ops, "gte": exact, "lte": exact}
    low: tuple = ()
    high: tuple | None = None
    bounds = {op: _integer(text, f"created[{op}]") for op, text in ops.items()}
    if "gte" in bounds or "gt" in bounds:
        low = (max(bounds.get("gte", -(2**63)), bounds.get("gt", -(2**63)) + 1),)
    if "lt" in bounds or "lte" in bounds:
        high = (min(bounds.get("lt", 2**63), bounds.get("lte", 2**63 - 1) + 1),)
    return low, high


def _where(kind: str, scalars: dict[str, str], types: list[str]) -> dict[str, Accept]:
    where: dict[str, Accept] = {}
    if kind == "events":
        if "type" in scalars and types:
            raise ApiError(400, "You may pass either type or types, but not both.", param="types")
        if len(types) > 20:
            raise ApiError(400, "types may hold at most 20 event types.", param="types")
        if types:
            where["type"] = frozenset(types)
        elif "type" in scalars and "*" in scalars["type"]:
            pattern = re.compile(re.escape(scalars["type"]).replace(r"\*", ".*"))
            where["type"] = lambda value: pattern.fullmatch(value) is not None
        elif "type" in scalars:
            where["type"] = frozenset({scalars["type"]})
    if "customer" in scalars:
        where["customer"] = frozenset({scalars["customer"]})
    if kind == "subscriptions":
        status = scalars.get("status")
        if status is None:
            where["status"] = lambda value: value != "canceled"
        elif status == "ended":
            where["status"] = frozenset({"canceled", "incomplete_expired"})
        elif status != "all":
            where["status"] = frozenset({status})
    elif "status" in scalars:
        where["status"] = frozenset({scalars["status"]})
    return where


def _mask(key: str) -> str:
    """sk_test_wrongkey -> sk_test_****gkey, as Stripe echoes a key it does not know."""
    if len(key) <= 4:
        return "****"
    head = key[:-4]
    return f"{head[: head.rfind('_') + 1]}****{key[-4:]}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, *, standin: StripeStandIn):
        self.standin = standin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the kept-alive connections, whose threads would otherwise wait for a next request."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            500: b"Internal Server Error"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's session reuses one connection
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        standin = self.server.standin
        fault = standin.unanswered(self.path)
        if fault:
            if isinstance(fault, threading.Event):
                fault.wait()
            self.close_connection = True
            return
        status, body = standin.respond(method, self.path, self.headers.get("Authorization"))
        head = b"".join((b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
                         b"Request-Id: %s\r\n\r\n" % standin.next_request_id().encode()))
        self.wfile.write(head + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
