"""The REST API's HTTP server (`keras-rnn serve --rest-api-port`): the WSGI
application `rest.RestApi` on Cheroot, CherryPy's production WSGI server.

    server = RestServer(app, "127.0.0.1", 8501, workers=64, max_keepalive=256)
    ...
    server.close(grace=10)     # in-flight requests finish, new ones are refused

What it gives the REST API over Werkzeug's development server:

- HTTP/1.1 keep-alive and pipelining: a connection serves request after
  request (answers in order); an idle one waits in one selector thread, not
  in a worker, and is closed after `idle_seconds`. At most `max_keepalive`
  idle connections are kept; past that an answer says `Connection: close`.
- A fixed pool of `workers` threads (no thread per connection). Connections
  wait for a worker in a queue of `workers` more; one that finds the queue
  full is answered 503 and closed, so connections in progress are bounded
  by 2 x workers + max_keepalive and the threads by workers + 2.
- Read deadlines: a request's line and headers must arrive within
  `header_seconds` of the worker picking the connection up (and the TLS
  handshake within the same), its body within `body_seconds`; a client too
  slow is answered 408 and dropped, and its worker moves on. Headers are
  limited to `max_header_bytes` (413).
- The body limit is `max_message_bytes` (gRPC's `--max-message-bytes`),
  checked by `RestApi` so that the 413 is TensorFlow Serving's JSON; a
  body the application leaves unread is read to keep the connection only
  up to that size (`max_body_drain`), else the connection closes.
- TLS with the gRPC flags' certificate, key and client CA; the handshake
  runs in the connection's worker under the header deadline (in the accept
  loop, one client that never sends its ClientHello would stall the others).
- `close(grace)`: the listening socket closes at once (new connections are
  refused), idle connections close, and requests in progress get `grace`
  seconds to finish, answering with `Connection: close`.

Why Cheroot: it is maintained (CherryPy's server), pure Python (about
1.5 MB with its two dependencies, jaraco.functools and more-itertools: the
serving image is near its size limit), a WSGI server with HTTP/1.1
keep-alive, a fixed thread pool with a bounded queue, per-socket timeouts
and a builtin TLS adapter. Waitress has no TLS; Gunicorn forks workers
(each would load the models). What Cheroot lacks, this module adds: the
whole-request read deadlines (its own timeout is per read, so a client
sending a byte at a time would hold a worker), the TLS handshake off the
accept loop, and daemon worker threads.
"""

import _pyio
import contextlib
import itertools
import logging
import socket
import ssl
import threading
import time

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import StreamReader, StreamWriter
from cheroot.ssl import Adapter
from cheroot.workers import threadpool

from keras_rnn.serving.observability import log

HEADER_SECONDS = 10.0
BODY_SECONDS = 30.0
IDLE_SECONDS = 60.0
MAX_HEADER_BYTES = 64 * 1024
_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n")


class _DeadlinePassed(BaseException):
    """A read past its deadline. Not an `Exception`, so that the
    application's `except Exception` (its JSON 500) does not answer it:
    `_Request` answers 408 and closes the connection."""


class _DeadlineIO(socket.SocketIO):
    """A socket's raw reader whose reads fail (`_DeadlinePassed`) once
    `deadline` (`time.monotonic()`, None: no deadline) has passed; the
    socket's own timeout still bounds each read. The first read of a TLS
    socket does its handshake, under the same deadline."""

    deadline = None
    _handshaken = False

    def readinto(self, buffer):
        sock, idle, deadline = self._sock, self._sock.gettimeout(), self.deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _DeadlinePassed()
            sock.settimeout(min(left, idle) if idle else left)
        try:
            if not self._handshaken and isinstance(sock, ssl.SSLSocket):
                try:
                    sock.do_handshake()
                except (ssl.SSLError, ConnectionError) as error:
                    raise cheroot_errors.FatalSSLAlert(*error.args) from error
                self._handshaken = True
            return super().readinto(buffer)
        except socket.timeout:
            if deadline is not None and time.monotonic() >= deadline:
                raise _DeadlinePassed() from None
            raise
        finally:
            if deadline is not None:
                sock.settimeout(idle)


class _Reader(StreamReader):
    """Cheroot's buffered socket reader over a `_DeadlineIO`."""

    def __init__(self, sock, mode="rb", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
        _pyio.BufferedReader.__init__(self, _DeadlineIO(sock, mode), bufsize)
        self.bytes_read = 0


def _make_file(sock, mode="r", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
    return (_Reader if "r" in mode else StreamWriter)(sock, mode, bufsize)


class _Request(cheroot_server.HTTPRequest):
    """A request whose headers are read under the header deadline and
    whose body under the body deadline."""

    def _under(self, seconds, step):
        """`step()` with the connection's reads due in `seconds`; past
        that, 408 (if nothing was sent yet) and the connection closes."""
        raw = self.conn.rfile.raw
        raw.deadline = time.monotonic() + seconds
        try:
            return step()
        except _DeadlinePassed:
            self.ready, self.close_connection = False, True
            if not self.sent_headers:
                self.sent_headers = True
                with contextlib.suppress(OSError):
                    self.conn.wfile.write(_TIMEOUT)
        finally:
            raw.deadline = None

    def parse_request(self):
        return self._under(self.server.header_seconds, super().parse_request)

    def respond(self):
        return self._under(self.server.body_seconds, super().respond)

    def send_headers(self):
        # A body the application left unread is read (and dropped) to keep
        # the connection; one over the body limit closes it instead.
        if getattr(self.rfile, "remaining", 0) > self.server.max_body_drain:
            self.close_connection = True
        return super().send_headers()


class _Connection(cheroot_server.HTTPConnection):
    RequestHandlerClass = _Request

    def __init__(self, server, sock, makefile=None):
        super().__init__(server, sock, _make_file)


class _TlsAdapter(Adapter):
    """TLS with an `ssl.SSLContext`; the handshake is left to the
    connection's first read (`_DeadlineIO`), in its worker."""

    def __init__(self, context):  # noqa: D107 - Adapter's arguments are its own
        super().__init__(None, None)
        self.context = context

    def bind(self, sock):
        return sock

    def wrap(self, sock):
        try:
            wrapped = self.context.wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
        except OSError as error:
            raise cheroot_errors.FatalSSLAlert(*error.args) from error
        return wrapped, self.get_environ()

    def get_environ(self):
        return {"wsgi.url_scheme": "https", "HTTPS": "on"}

    def makefile(self, sock, mode="r", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
        return _make_file(sock, mode, bufsize)


class _Pool(threadpool.ThreadPool):
    """Cheroot's pool of workers, as daemon threads (as Werkzeug's were):
    a worker still inside the application does not hold the process."""

    _numbers = itertools.count()

    def _spawn_worker(self):
        worker = threadpool.WorkerThread(self.server)
        worker.name = f"rest-worker-{next(self._numbers)}"
        worker.daemon = True
        worker.start()
        return worker


class _Server(wsgi.Server):
    ConnectionClass = _Connection
    header_seconds = HEADER_SECONDS
    body_seconds = BODY_SECONDS
    max_body_drain = 0
    expiration_interval = 0.2  # how often idle connections are expired; stop's latency

    def error_log(self, msg="", level=logging.INFO, traceback=False):
        """Cheroot's messages (a dropped connection, a worker's error) as
        debug lines of the server's log, errors as errors."""
        log.log(logging.ERROR if level >= logging.ERROR else logging.DEBUG, "http server",
                exc_info=traceback, extra={"fields": {
                    "event": "http_server", "api": "rest", "message": str(msg)}})


def tls_context(tls_cert, tls_key, tls_client_ca=None):
    """The server's `ssl.SSLContext` from the gRPC TLS flags' PEM files
    (None without a certificate).

    Args:
        tls_cert, tls_key: the server certificate chain and key.
        tls_client_ca: the CA client certificates must chain to (mutual TLS).

    Returns:
        An `ssl.SSLContext`, or None.
    """
    if not tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_cert, tls_key)
    if tls_client_ca:
        context.load_verify_locations(tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class RestServer:
    """Serves a WSGI application (`RestApi`) on a port, on Cheroot.

    Args:
        app: the WSGI application.
        host, port: where to listen (port 0: any free port).
        tls_cert, tls_key, tls_client_ca: PEM files, as for gRPC.
        workers: threads answering requests.
        max_keepalive: most idle keep-alive connections kept open.
        header_seconds: deadline of a request's line and headers (and of
            the TLS handshake).
        body_seconds: deadline of a request's body.
        idle_seconds: how long an idle connection is kept; also the limit
            of each socket read and write.
        max_header_bytes: largest request line and headers.
        max_body_drain: largest body left unread by the application that is
            read to keep the connection open (larger: it is closed). The
            server passes `max_message_bytes`.
        backlog: the listening socket's backlog.

    Attributes:
        port: the bound port.
    """

    def __init__(self, app, host, port, tls_cert=None, tls_key=None, tls_client_ca=None,
                 workers=64, max_keepalive=256, header_seconds=HEADER_SECONDS,
                 body_seconds=BODY_SECONDS, idle_seconds=IDLE_SECONDS,
                 max_header_bytes=MAX_HEADER_BYTES, max_body_drain=4 * 1024 * 1024,
                 backlog=128):
        context = tls_context(tls_cert, tls_key, tls_client_ca)
        self._http = _Server((host, port), app, server_name="keras-rnn",
                             request_queue_size=backlog, timeout=idle_seconds)
        # A connection that finds every worker busy and `workers` waiting is
        # answered 503 at once (not after a wait in the accept loop).
        self._http.requests = _Pool(self._http, min=workers, max=workers,
                                    accepted_queue_size=workers, accepted_queue_timeout=0)
        self._http.max_body_drain = max_body_drain
        self._http.header_seconds = header_seconds
        self._http.body_seconds = body_seconds
        self._http.keep_alive_conn_limit = max_keepalive
        self._http.max_request_header_size = max_header_bytes
        if context is not None:
            self._http.ssl_adapter = _TlsAdapter(context)
        self._http.prepare()
        self.port = self._http.bind_addr[1]
        self._thread = threading.Thread(target=self._http.serve, name="rest-api",
                                        daemon=True)
        self._thread.start()

    def close(self, grace=5.0):
        """Stops: new connections are refused at once, idle ones are closed,
        requests in progress get `grace` seconds to finish (their answers
        say `Connection: close`); then their connections are shut.

        Args:
            grace: seconds requests in progress may still take.
        """
        self._http.shutdown_timeout = grace
        stopper = threading.Thread(target=self._http.stop, name="rest-api-stop", daemon=True)
        stopper.start()
        # Cheroot waits for a worker still inside the application past the
        # grace; the process does not.
        stopper.join(grace + 2)
        self._thread.join(2)
