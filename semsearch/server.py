"""``semsearch serve``: the HTTP API and the web page, one long-lived process (FastAPI + uvicorn).

The process keeps one :class:`~semsearch.engine.Engine` open, so the query model is loaded and the
vector segments are mapped once. It never writes the index: an ``index`` or ``watch`` process
writes it meanwhile, and every search first picks up the newest committed revision (see
docs/design.md), so new documents are found without a restart.

Requests run in a thread pool, concurrently: each SQLite read checks out its own pooled
connection, FAISS searches of the mapped segments only read, onnxruntime sessions may be run from
several threads, and the vector store reloads a new revision under its own lock. At most one
engine call per core runs at once (docs/benchmarks.md#the-http-server-and-watch-mode compares
this with no bound and with one request at a time).

Safety: loopback only unless ``allow_remote`` is given, and then only with a token, which is
checked on every request (``Authorization: Bearer``, the ``semsearch_token`` cookie the web page
gets, or ``?token=``); query length, ``limit`` and request bodies are bounded; every error is a
JSON object ``{"error": "...", "status": N}``, never a traceback.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time,
# and those name aliases local to create_app.
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from semsearch import __version__, rendezvous, warm
from semsearch.engine import Engine
from semsearch.errors import (
    DocumentNotFoundError,
    EmptyIndexError,
    EmptyQueryError,
    IndexLockedError,
    SemsearchError,
)
from semsearch.locking import WriteLock

TOKEN_ENV = "SEMSEARCH_TOKEN"
MAX_QUERY_CHARS = 1_000
MAX_LIMIT = 100
MAX_FILTER_CHARS = 1_000  # a path glob, a type, a KEY=VALUE
MAX_FILTERS = 20  # --type / --meta values in one request
MAX_BODY_BYTES = 64 * 1024
# Engine calls running at the same time (the others queue): one per core this process may use.
SEARCHES_AT_ONCE = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WEB = Path(__file__).resolve().parent / "web"
COOKIE = "semsearch_token"

log = logging.getLogger("semsearch.server")

# SemsearchError subclasses -> HTTP status; any other library error is a 500.
_STATUS = (
    (EmptyQueryError, 400),
    (DocumentNotFoundError, 404),
    (EmptyIndexError, 409),
    (IndexLockedError, 409),
)


class ServeError(SemsearchError):
    """The server cannot start as asked (an address it may not bind, a missing token)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


# -- the application ------------------------------------------------------------------------------


def create_app(engine: Engine, *, token: str | None = None, at_once: int | None = SEARCHES_AT_ONCE) -> "_Guard":
    """The ASGI application serving ``engine``. ``token``, if given, is required on every request.

    ``at_once`` bounds the engine calls that run at the same time (``None``: no bound; 1: one
    request at a time); the default, one per core, measured best (docs/benchmarks.md: more
    searches at once than cores only fight over them and over the GIL).
    """
    if at_once is not None and at_once < 1:
        raise ValueError("at_once must be at least 1, or None for no bound")
    access = threading.BoundedSemaphore(at_once) if at_once else contextlib.nullcontext()
    reindex = _Reindex(engine)
    app = FastAPI(
        title="semsearch",
        version=__version__,
        description=(
            "Local semantic search over an index of documents. Hits have the shape of "
            "`semsearch search --json`. If the server was started with a token, send it as "
            "`Authorization: Bearer TOKEN` (or `?token=TOKEN`)."
        ),
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "path", "body"))
            problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else item.get("msg", "invalid"))
        return _error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(SemsearchError)
    async def library_error(_request: Request, error: SemsearchError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(error, kind)), 500)
        return _error(status, " ".join(str(error).split()))

    Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"How many results (at most {MAX_LIMIT}).")]
    PathGlob = Annotated[
        str | None,
        Query(max_length=MAX_FILTER_CHARS, description="Only documents whose path matches this glob, e.g. *.md."),
    ]
    Types = Annotated[
        list[str], Query(max_length=MAX_FILTERS, description="Only these file types, e.g. md or pdf (repeatable).")
    ]
    Meta = Annotated[
        list[str], Query(max_length=MAX_FILTERS, description="Only documents with this KEY=VALUE metadata (repeatable).")
    ]

    @app.get("/search", summary="Search the index", tags=["search"])
    def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="The question, in plain words.")],
        limit: Limit = 10,
        mode: Annotated[Literal["semantic", "keyword", "hybrid"], Query(description="How to rank.")] = "hybrid",
        path: PathGlob = None,
        type: Types = [],  # noqa: A002, B006 - the query parameter's name; FastAPI copies defaults
        meta: Meta = [],  # noqa: B006
        group: Annotated[bool, Query(description="Each document once, with its best chunk.")] = False,
        min_score: Annotated[
            float | None, Query(ge=0.0, le=1.0, description="Leave out hits whose relevance (0 to 1) is below this.")
        ] = None,
    ) -> JSONResponse:
        """The best chunks for the question, each as `semsearch search --json` prints it
        (`relevance`: 0 to 1, about how often a hit like it was judged relevant; `score`: the
        ranking's own number)."""
        filters = _metadata_filter(meta)
        _check_filters(type)
        with access:
            hits = engine.search(
                q, limit=limit, mode=mode, path=path, types=type, metadata=filters, group_by_document=group,
                min_score=min_score,
            )
        return JSONResponse([hit.to_dict() for hit in hits])

    @app.get("/similar/{document_id}", summary="Documents most like one document", tags=["search"])
    def similar(
        document_id: int,
        limit: Limit = 10,
        path: PathGlob = None,
        type: Types = [],  # noqa: A002, B006
        meta: Meta = [],  # noqa: B006
    ) -> JSONResponse:
        """"More like this": other documents, best first, each with its passage most like the
        whole document (see `semsearch similar`)."""
        filters = _metadata_filter(meta)
        _check_filters(type)
        with access:
            hits = engine.similar(document_id, limit=limit, path=path, types=type, metadata=filters)
        return JSONResponse([hit.to_dict() for hit in hits])

    @app.get("/documents/{document_id}", summary="One document: its text, metadata and chunks", tags=["documents"])
    def document(document_id: int) -> JSONResponse:
        """The document as indexed: `text` is its chunks laid end to end, `chunks` each with its
        lines (and PDF page)."""
        with access:
            found = engine.document(document_id)
        return JSONResponse(found.to_dict())

    @app.get("/status", summary="What the index holds", tags=["index"])
    def status() -> JSONResponse:
        """`semsearch status --json`, plus the revision searches see now and any re-indexing."""
        with access:
            described = asdict(engine.status())
            described["revision"] = engine.revision()
        described["version"] = __version__
        described["indexing"] = reindex.describe()
        return JSONResponse(described)

    @app.post("/index", status_code=202, summary="Re-index the folders the index holds", tags=["index"])
    def index() -> JSONResponse:
        """Start `semsearch index` on the folders that hold the indexed files, in a separate
        process; 409 if any process is writing the index already. Progress is in `GET /status`."""
        return JSONResponse(reindex.start(), status_code=202)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def api_page() -> FileResponse:
        return FileResponse(WEB / "docs.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return _Guard(app, token=token)


def _metadata_filter(items: list[str]) -> dict[str, str]:
    metadata = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HTTPException(400, f"meta: expected KEY=VALUE, got {item!r}")
        if len(item) > MAX_FILTER_CHARS:
            raise HTTPException(400, f"meta: longer than {MAX_FILTER_CHARS} characters")
        metadata[key] = value
    return metadata


def _check_filters(types: list[str]) -> None:
    if any(len(item) > MAX_FILTER_CHARS for item in types):
        raise HTTPException(400, f"type: longer than {MAX_FILTER_CHARS} characters")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


# -- every request: token, size, last-resort errors --------------------------------------------------


class _Guard:
    """ASGI middleware around the whole application (plain ASGI: no per-request task or copy).

    Checks the token, refuses bodies over :data:`MAX_BODY_BYTES` (and bodies of unknown length),
    and turns any exception that escaped the handlers into a JSON 500 with one log line.
    """

    def __init__(self, app: FastAPI, *, token: "str | None") -> None:
        self.app = app
        self._token = token.encode() if token else None
        self.last_request = time.monotonic()  # read by serve(idle_exit=...)

    def __getattr__(self, name: str) -> Any:  # routes, openapi(), state: as the app has them
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.last_request = time.monotonic()
        headers = dict(scope.get("headers") or ())
        set_cookie = False
        if self._token is not None:
            given, set_cookie = self._given_token(scope, headers)
            if given is None or not hmac.compare_digest(given, self._token):
                await _send_json(send, 401, "missing or wrong token: send Authorization: Bearer TOKEN",
                                 extra=[(b"www-authenticate", b"Bearer")])
                return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                await _send_json(send, 413, f"request body larger than {MAX_BODY_BYTES} bytes")
                return
        elif b"chunked" in headers.get(b"transfer-encoding", b""):
            await _send_json(send, 411, "send a Content-Length with a request body")
            return
        started = False

        async def watched_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if set_cookie:
                    cookie = f"{COOKIE}={self._token.decode()}; Path=/; HttpOnly; SameSite=Strict"
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as error:  # noqa: BLE001 - the last resort: a JSON 500, never a traceback
            log.error("error in %s %s: %s: %s", scope.get("method"), scope.get("path"), type(error).__name__, error)
            if not started:
                await _send_json(send, 500, f"internal error ({type(error).__name__}); see the server's log")

    def _given_token(self, scope, headers: dict[bytes, bytes]) -> tuple[bytes | None, bool]:
        """The token the request carries, and whether it came in the URL (then the page gets a cookie)."""
        authorization = headers.get(b"authorization", b"")
        if authorization[:7].lower() == b"bearer ":
            return authorization[7:].strip(), False
        cookies = headers.get(b"cookie")
        if cookies:
            jar = SimpleCookie()
            with contextlib.suppress(Exception):
                jar.load(cookies.decode("latin-1"))
            if COOKIE in jar:
                return jar[COOKIE].value.encode(), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0].encode(), True
        return None, False


async def _send_json(send, status: int, message: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- re-indexing --------------------------------------------------------------------------------------


class _Reindex:
    """``POST /index``: one ``semsearch index`` child process at a time, and what it did.

    A child process, not a thread: indexing loads the full model (PyTorch), which a server
    that only answers queries never needs, and a child gives it back when done. The child
    takes the index's write lock like any writer; this process never writes.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"state": "idle"}
        self._process: subprocess.Popen | None = None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state)

    def start(self) -> dict[str, Any]:
        with self._lock:
            if self._state.get("state") == "running":
                raise IndexLockedError("this server is re-indexing already; see GET /status")
            probe = WriteLock(self._engine.directory)
            if not probe.try_acquire():
                raise IndexLockedError(
                    "another semsearch process is writing to the index; try again when it has finished"
                )
            probe.release()
            folders = self._engine.folders()
            present = [folder for folder in folders if os.path.isdir(folder)]
            if not present:
                raise HTTPException(409, "the index holds no files from folders that still exist")
            command = [sys.executable, "-m", "semsearch", "--index", str(self._engine.directory), "index",
                       *present, "--json"]
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
            )
            self._state = {
                "state": "running",
                "pid": self._process.pid,
                "folders": present,
                "missing": sorted(set(folders) - set(present)),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            threading.Thread(target=self._wait, args=(self._process,), daemon=True).start()
            return dict(self._state)

    def _wait(self, process: subprocess.Popen) -> None:
        out, err = process.communicate()
        with self._lock:
            state = {**self._state, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            if process.returncode == 0:
                try:
                    state.update(state="done", summary=json.loads(out))
                except ValueError:
                    state.update(state="done")
            else:
                lines = [line for line in err.splitlines() if line.strip()]
                state.update(state="failed", error=lines[-1] if lines else f"exit status {process.returncode}")
            self._state = state


# -- running ------------------------------------------------------------------------------------------


def serve(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_remote: bool = False,
    ready: Any = None,
    at_once: int | None = SEARCHES_AT_ONCE,
    idle_exit: float | None = None,
) -> str | None:
    """Serve ``engine`` until interrupted; with ``idle_exit``, also until no request came for
    that many seconds or the index was replaced, and then say which (a sentence). ``ready(url)``
    is called once the socket listens; ``at_once`` is :func:`create_app`'s."""
    import uvicorn

    if not is_loopback(host):
        if not allow_remote:
            raise ServeError(
                f"{host} is reachable from other machines; serving there needs --allow-remote and a "
                f"token (--token or ${TOKEN_ENV}), or leave --host out to serve this machine only"
            )
        if not token:
            raise ServeError(f"serving on {host} needs a token: give --token or set ${TOKEN_ENV}")
    with contextlib.suppress(EmptyIndexError):
        engine.search("warm up", limit=1, mode="semantic")  # load the query model, map the segments
    # A server searches again and again: its copies in memory are read now, beside its first requests.
    threading.Thread(target=engine.preload, daemon=True, name="semsearch-preload").start()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only for sockets that
    # say they are TCP, and with it on every response waited ~40 ms for a delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
    except OSError as error:
        listener.close()
        raise ServeError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port") from None
    listener.listen(128)
    bound_host, bound_port = listener.getsockname()[:2]
    url = f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}/"
    app = create_app(engine, token=token, at_once=at_once)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        server_header=False,
        h11_max_incomplete_event_size=MAX_QUERY_CHARS * 16,  # the request line and headers
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    # Let a new `semsearch search` of this index ask this process (semsearch.rendezvous); it
    # connects over loopback, also when this server listens on every address.
    local_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound_host, bound_host)
    local_url = f"http://{'[' + local_host + ']' if ':' in local_host else local_host}:{bound_port}/"
    withdraw = rendezvous.announce(engine.directory, local_url, token)
    warm.started(engine.directory)
    stopped: list[str] = []  # why the watchdog stopped it
    if idle_exit is not None:
        watched = (engine.directory, rendezvous.identity(engine.directory))
        threading.Thread(target=_stop_when_idle, args=(server, app, idle_exit, stopped, watched), daemon=True,
                         name="semsearch-idle").start()
    try:
        if ready is not None:
            ready(url)
        server.run(sockets=[listener])
    finally:
        withdraw()
    return stopped[0] if stopped else None


def _stop_when_idle(server: Any, app: _Guard, seconds: float, stopped: list[str], watched: tuple[Path, Any]) -> None:
    """Ask ``server`` to stop once ``seconds`` pass without a request, or once the index it
    serves was deleted or made again at its path (it would go on reading the old files).
    Checked every second."""
    directory, database = watched
    while not server.should_exit:
        waited = time.monotonic() - app.last_request
        if rendezvous.identity(directory) != database:
            stopped.append(f"the index at {directory} was deleted or replaced")
        elif waited >= seconds:
            stopped.append(f"no request for {seconds:g} s")
        if stopped:
            server.should_exit = True
            return
        time.sleep(min(1.0, max(seconds - waited, 0.01)))
