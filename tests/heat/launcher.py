"""Runs a standalone OpenStack Heat for Hearth's tests: Heat's own EngineService and Heat's own paste API
pipeline in ONE process, on a free 127.0.0.1 port, with no other OpenStack service.

Heat 27 ships no `heat-all` (the eventlet launcher that used to do this) and no `heat-api` launcher, only
`heat-engine` and the WSGI application. The engine and the API must share one process because the
in-memory `fake://` messaging transport only connects callers inside a process.

Usage (run with the Heat venv's python):
    launcher.py --state-dir DIR [--sleep-scale 0.1] [--public-host IPV4]

DIR receives heat.conf (from heat.conf.in beside this script, or in DIR), token.json, heat.sqlite,
heat.log and, once the API answers requests, ready.json = {"port": P, "pid": N}, written atomically.
The process exits when its parent dies (so a killed test run leaves no Heat behind) or on SIGTERM.

What this changes in Heat, and why (nothing else is touched):
  * SQLite: Heat's threads each open their own DB connection and SQLite answers "database is locked"
    when two of them write at once (a deferred transaction upgrading to a write lock fails at once,
    whatever the busy timeout). The launcher lets only one thread at a time hold a connection, and
    sets WAL mode and a busy timeout on every connection as a second line of defence.
    Known limit: SQLite reuses the row ids of deleted rows, which breaks a stack UPDATE ("Resource
    PropertiesData with id N not found"). Tests create, signal and delete stacks; none updates one.
  * Pace: the engine paces itself with fixed 1 s sleeps (between polls of a running action, between
    triggering the leaves of a traversal). They are multiplied by --sleep-scale (see
    scale_engine_sleeps). This only changes how often Heat looks at progress: every timeout (stack,
    wait condition) is measured in wall-clock time and keeps its real length.

--public-host: the address the token catalog's `public` orchestration endpoint names (see token_response);
the API itself still listens on 127.0.0.1 only. Booted test nodes cannot reach this machine's loopback; they
reach Heat through a forward at their network's gateway, and the wait-condition handle endpoints they
signal must name that gateway.
"""

# The threading backend must be chosen before anything imports oslo_service.service (heat-engine does
# the same first thing).
from oslo_service import backend

backend.init_backend(backend.BackendType.THREADING)

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socketserver  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from wsgiref import simple_server  # noqa: E402

import sqlalchemy  # noqa: E402
import sqlalchemy.pool  # noqa: E402

SQLITE_BUSY_TIMEOUT_MS = 30000
PROJECT = "admin"


class OneConnectionAtATime:
    """A lock held from a DB connection's checkout to its checkin.

    Re-entrant per thread (Heat sometimes opens a second session inside a first one) and releasable
    from any thread (SQLAlchemy may return a connection from the garbage collector's thread).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._owner = None
        self._depth = 0

    def acquire(self):
        me = threading.get_ident()
        with self._cond:
            while self._owner not in (None, me):
                self._cond.wait()
            self._owner = me
            self._depth += 1

    def release(self):
        with self._cond:
            if self._depth == 0:
                return
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()


def serialise_sqlite():
    lock = OneConnectionAtATime()

    @sqlalchemy.event.listens_for(sqlalchemy.pool.Pool, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        # The timeout first: switching to WAL itself needs a lock another connection may hold.
        cursor.execute("PRAGMA busy_timeout=%d" % SQLITE_BUSY_TIMEOUT_MS)
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @sqlalchemy.event.listens_for(sqlalchemy.pool.Pool, "checkout")
    def _checkout(_dbapi_connection, record, _proxy):
        lock.acquire()
        record.info["hearth_locked"] = True

    @sqlalchemy.event.listens_for(sqlalchemy.pool.Pool, "checkin")
    def _checkin(_dbapi_connection, record):
        if record.info.pop("hearth_locked", False):
            lock.release()


class ScaledTime:
    """Stands in for the `time` module inside one Heat module: `sleep` is scaled, all else is `time`."""

    def __init__(self, scale):
        self._scale = scale

    def sleep(self, seconds):
        time.sleep(seconds * self._scale)

    def __getattr__(self, name):
        return getattr(time, name)


def scale_engine_sleeps(scale):
    """Scales the engine's fixed pacing sleeps.

    - heat.engine.scheduler.TaskRunner._sleep: 1 s between two polls of a running resource action.
    - heat.engine.stack (convergence): 1 s after triggering each leaf resource of a traversal, so a
      nested stack of five independent resources waits 5 s before its last one even starts.
    - heat.engine.service: 1 s between checks while a delete waits for a cancelled create (bounded by a
      wall-clock StopWatch, so only the pace changes).
    Timeouts are all wall-clock based (stack timeout, wait condition timeout) and keep their length.
    """
    from heat.engine import scheduler
    from heat.engine import service
    from heat.engine import stack

    def _sleep(self, wait_time):
        if scheduler.ENABLE_SLEEP and wait_time is not None:
            time.sleep(wait_time * scale)

    scheduler.TaskRunner._sleep = _sleep
    stack.time = ScaledTime(scale)
    service.time = ScaledTime(scale)


def token_response(port, public_host=None):
    """A Keystone v3 token body, as noauth hands it to Heat for every request.

    The `public` orchestration endpoint is what a wait-condition handle's `endpoint` (and its `curl_cli`
    and `signal` attributes) is built from, as Heat 27 does it:
    heat/engine/resources/openstack/heat/wait_condition_handle.py, HeatWaitConditionHandle.handle_create
    stores `'%s/signal' % self._get_resource_endpoint()`, which starts from
    heat/engine/clients/os/heat_plugin.py HeatClientPlugin.get_heat_url(): with no [clients_heat] url
    configured, `url_for(service_type='orchestration', endpoint_type=<[clients_heat]/[clients]
    endpoint_type>)`, whose default is `public` (heat/common/config.py); heat.conf.in sets neither.
    (signal_responder.SignalResponder._get_heat_signal_url takes the same get_heat_url().) So with
    `public_host`, the endpoints nodes signal name it, while `internal` and `admin` stay on 127.0.0.1.
    """
    def url(host):
        return "http://%s:%d/v1/%s" % (host, port, PROJECT)

    hosts = {"public": public_host or "127.0.0.1", "internal": "127.0.0.1", "admin": "127.0.0.1"}
    domain = {"id": "default", "name": "Default"}
    endpoints = [
        {"id": uuid.uuid4().hex, "interface": interface, "region": "RegionOne",
         "region_id": "RegionOne", "url": url(host)}
        for interface, host in hosts.items()
    ]
    return {
        "token": {
            "methods": ["password"],
            "expires_at": "2999-12-31T23:59:59.000000Z",
            "issued_at": "2000-01-01T00:00:00.000000Z",
            "user": {"id": PROJECT, "name": PROJECT, "domain": domain},
            "project": {"id": PROJECT, "name": PROJECT, "domain": domain},
            "roles": [{"id": "admin", "name": "admin"}],
            "catalog": [
                {"id": uuid.uuid4().hex, "type": "orchestration", "name": "heat",
                 "endpoints": endpoints},
            ],
        }
    }


def write_atomically(path, text):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def write_config(state_dir, port, public_host):
    here = os.path.dirname(os.path.abspath(__file__))
    template_path = os.path.join(here, "heat.conf.in")
    with open(template_path) as f:
        template = f.read()
    api_paste = os.path.join(sys.prefix, "etc", "heat", "api-paste.ini")
    if not os.path.isfile(api_paste):
        sys.exit("launcher: %s is missing from the Heat venv" % api_paste)
    conf = template.replace("@STATE_DIR@", state_dir).replace("@API_PASTE@", api_paste)
    if "@" in "".join(line for line in conf.splitlines() if not line.startswith("#")):
        sys.exit("launcher: unfilled placeholder in %s" % template_path)
    conf_path = os.path.join(state_dir, "heat.conf")
    write_atomically(conf_path, conf)
    write_atomically(os.path.join(state_dir, "token.json"), json.dumps(token_response(port, public_host)))
    return conf_path


class ThreadingWSGIServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    # A signal or a status poll must be answered while another request (a stack create) is served.
    daemon_threads = True
    allow_reuse_address = False


class QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format, *args):
        # One line per request in launcher.log: method, path (never a token: those travel in headers)
        # and status.
        sys.stderr.write("api: %s\n" % (format % args))


def public_host(text):
    """An IPv4 address, as it goes into a URL (no name: nothing here resolves names)."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError("not an IPv4 address: %r" % text)


def exit_with_parent(parent_pid):
    while True:
        if os.getppid() != parent_pid:
            os._exit(0)
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--sleep-scale", type=float, default=0.1)
    parser.add_argument("--public-host", type=public_host,
                        help="the IPv4 address the catalog's public orchestration endpoint names")
    args = parser.parse_args()
    state_dir = os.path.abspath(args.state_dir)

    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    # Bind first: the port goes into the token's catalog, which Heat reads when the API is built.
    httpd = ThreadingWSGIServer(("127.0.0.1", 0), QuietHandler)
    port = httpd.server_address[1]
    conf_path = write_config(state_dir, port, args.public_host)

    serialise_sqlite()

    from oslo_config import cfg
    import oslo_i18n
    from oslo_log import log as logging

    from heat.common import config
    from heat.common import messaging
    from heat.db import migration
    from heat import version

    oslo_i18n.enable_lazy()
    conf = cfg.CONF
    logging.register_options(conf)
    conf(args=["--config-file", conf_path], project="heat", prog="heat-api",
         version=version.version_info.version_string())
    logging.setup(conf, "heat")
    config.set_config_defaults()
    messaging.setup()
    config.startup_sanity_check()

    started = time.monotonic()
    migration.db_sync()
    print("launcher: database ready in %.1f s" % (time.monotonic() - started), flush=True)

    scale_engine_sleeps(args.sleep_scale)

    from heat.engine import service as engine_service
    from heat.rpc import api as rpc_api

    engine = engine_service.EngineService(conf.host, rpc_api.ENGINE_TOPIC)
    engine.start()

    httpd.set_app(config.load_paste_app("heat-api"))
    ready = {"port": port, "pid": os.getpid()}
    write_atomically(os.path.join(state_dir, "ready.json"), json.dumps(ready))
    print("launcher: Heat API on http://127.0.0.1:%d/ (engine and API in pid %d)" % (port, os.getpid()),
          flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
