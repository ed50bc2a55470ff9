"""Bring the local stack up and down under supervisord, in dependency order behind health gates."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamml.config import Settings
from streamml.errors import ConfigError, StreamMLError
from streamml.paths import StackPaths, make_private_dir, write_private
from streamml.runtime import health
from streamml.runtime.launch import mlflow_auth_config_path, mlflow_auth_db, render_kafka_config, render_redis_config
from streamml.runtime.programs import Program, airflow_env, all_programs, venv_bin
from streamml.stores.minio_auth import ensure_accounts as ensure_minio_accounts
from streamml.stores.mlflow_auth import auth_config, sqlite_uri
from streamml.stores.mlflow_auth import ensure_accounts as ensure_mlflow_accounts
from streamml.streaming.acl import ensure_accounts as ensure_kafka_accounts

logger = logging.getLogger(__name__)

MIN_FREE_DISK = 2**30  # bytes; Kafka, MinIO and Airflow of a first deploy use a few hundred MB

Say = Callable[[str], None]


def _quote(value: str) -> str:
    """Quote a value for supervisord's ``environment=`` (double quotes; % escaped for its interpolation)."""
    return '"' + value.replace("%", "%%").replace('"', '\\"') + '"'


def render_supervisord_conf(programs: list[Program], paths: StackPaths) -> str:
    """The supervisord config: one program per entry, all started on demand (autostart off), restart on crash."""
    lines = [
        "[unix_http_server]",
        f"file={paths.supervisor_socket}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={paths.logs / 'supervisord.log'}",
        f"pidfile={paths.supervisor_pidfile}",
        f"directory={paths.root}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        "nodaemon=false",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{paths.supervisor_socket}",
        "",
    ]
    for p in programs:
        env = {"PYTHONUNBUFFERED": "1", **p.env}
        lines += [
            f"[program:{p.name}]",
            "command=" + " ".join(_quote(a) if (" " in a or "*" in a) else a.replace("%", "%%") for a in p.command),
            f"directory={paths.root}",
            "autostart=false",
            # a job (the replayer) is restarted only when it fails, not when it finishes
            "autorestart=" + ("true" if p.long_running else "unexpected"),
            "exitcodes=0",
            "startsecs=3",
            "startretries=10",
            "stopsignal=TERM",
            f"stopwaitsecs={p.stop_wait_seconds}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={paths.logs / (p.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
            "environment=" + ",".join(f"{k}={_quote(v)}" for k, v in env.items()),
            "",
        ]
    return "\n".join(lines)


class Supervisor:
    """A thin client of supervisord's XML-RPC interface over its unix socket."""

    def __init__(self, paths: StackPaths) -> None:
        self.paths = paths

    def _proxy(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.paths.supervisor_socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def running(self) -> bool:
        if not self.paths.supervisor_socket.exists():
            return False
        try:
            return self._proxy().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def start_daemon(self) -> None:
        subprocess.run([venv_bin("supervisord"), "-c", str(self.paths.supervisor_conf)], check=True)  # noqa: S603
        deadline = time.monotonic() + 20
        while not self.running():
            if time.monotonic() > deadline:
                raise StreamMLError(f"supervisord did not start; see {self.paths.logs / 'supervisord.log'}")
            time.sleep(0.2)

    def reload_config(self) -> None:
        """Pick up programs added to or removed from the config without touching running ones."""
        added, changed, removed = self._proxy().supervisor.reloadConfig()[0]
        rpc = self._proxy().supervisor
        for name in removed + changed:
            try:
                rpc.stopProcess(name)
            except xmlrpc.client.Fault:
                pass
            rpc.removeProcessGroup(name)
        for name in added + changed:
            rpc.addProcessGroup(name)

    def processes(self) -> dict[str, dict[str, Any]]:
        if not self.running():
            return {}
        return {p["name"]: p for p in self._proxy().supervisor.getAllProcessInfo()}

    def start(self, name: str) -> None:
        try:
            self._proxy().supervisor.startProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise StreamMLError(
                    f"{name} failed to start ({fault.faultString}); see {self.paths.logs / (name + '.log')}"
                ) from fault

    def stop(self, name: str) -> None:
        """Stop program ``name`` and wait for it (a program that is not running is fine)."""
        try:
            self._proxy().supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise StreamMLError(f"{name} failed to stop ({fault.faultString})") from fault

    def restart(self, name: str) -> None:
        """Stop program ``name`` (waiting for it) and start it again."""
        self.stop(name)
        self.start(name)

    def shutdown(self, timeout: float = 90.0) -> None:
        pid = self._pid()
        if not self.running():
            return
        self._proxy().supervisor.shutdown()
        deadline = time.monotonic() + timeout
        while pid and _alive(pid):
            if time.monotonic() > deadline:
                raise StreamMLError(f"supervisord (pid {pid}) did not stop within {timeout:.0f}s")
            time.sleep(0.3)

    def _pid(self) -> int | None:
        try:
            return int(self.paths.supervisor_pidfile.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    pids: list[int]
    ports: list[int]
    state: str
    detail: str
    ok: bool


class LocalStack:
    """The local stack of real processes: render config, start in stages behind health gates, stop, report."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.paths = StackPaths.from_settings(settings, root)
        self.programs = all_programs(settings, self.paths)
        self.supervisor = Supervisor(self.paths)

    # -- preparing ---------------------------------------------------------------------------------------------
    def check_prerequisites(self) -> None:
        missing = []
        if not list(self.paths.kafka_libs.glob("kafka_*.jar")):
            missing.append(f"Kafka jars in {self.paths.kafka_libs}")
        if not self.paths.minio_binary.exists():
            missing.append(f"MinIO binary {self.paths.minio_binary}")
        if not shutil.which("redis-server"):
            missing.append("redis-server (Debian package redis-server)")
        if not shutil.which("java"):
            missing.append("java (Java 17, Debian package openjdk-17-jre-headless)")
        if missing:
            raise ConfigError("missing: " + "; ".join(missing) + ". Run ./run.sh setup.")

    def render(self) -> None:
        make_private_dir(self.paths.state)  # data, logs and config that hold secrets: the owner's only
        for sub in ("logs", "supervisor", "redis", "minio", "mlflow", "airflow", "kafka"):
            make_private_dir(self.paths.state / sub)
        render_kafka_config(self.settings, self.paths)
        render_redis_config(self.settings, self.paths)
        write_private(mlflow_auth_config_path(self.paths), auth_config(sqlite_uri(mlflow_auth_db(self.paths))))
        af = self.settings.airflow
        passwords = {af.admin_user: af.admin_password.get_secret_value()}
        write_private(self.paths.airflow_home / "passwords.json", json.dumps(passwords))
        write_private(self.paths.supervisor_conf, render_supervisord_conf(self.programs, self.paths))

    def check_disk(self, needed_bytes: int = MIN_FREE_DISK) -> None:
        """Fail before starting anything when the state directory's disk is nearly full (Kafka, MinIO and Airflow
        write there, and a full disk makes them fail in confusing ways)."""
        probe = next(p for p in (self.paths.state, *self.paths.state.parents) if p.exists())
        free = shutil.disk_usage(probe).free
        if free < needed_bytes:
            raise ConfigError(
                f"only {free / 2**30:.1f} GiB free on the disk of {self.paths.state}; the stack needs at least "
                f"{needed_bytes / 2**30:g} GiB.\n  fix: free some space, or set STREAMML_STATE_DIR in .env to a "
                "directory on a bigger disk"
            )

    def down_report(self, exc: health.StillDown, lines: int = 12) -> str:
        """Why services did not come up: the failed checks and the last lines of each one's program log."""
        services = {d.service for d in exc.down}
        programs = [p.name for p in self.programs if p.service in services]
        parts = [str(exc)]
        for name in programs:
            log = self.paths.logs / f"{name}.log"
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no log yet)"]
            parts += [f"last lines of {log}:", *(f"    {line}" for line in tail)]
        parts.append(
            f"fix: read the whole log (./run.sh logs {programs[0] if programs else 'NAME'}); after fixing the cause, "
            "./run.sh down && ./run.sh up starts the stack again"
        )
        return "\n  ".join(parts)

    def check_ports(self, programs: list[Program]) -> None:
        """Fail before starting anything when a port we need is taken by a process that is not ours."""
        taken = [
            f"port {port} for {p.name} is already in use by another process "
            f"(stop it, or set {var} in .env to a free port)"
            for p in programs
            for port, var in p.ports
            if port_in_use("127.0.0.1", port)
        ]
        if taken:
            raise ConfigError("\n  ".join(["ports taken, nothing was started:", *taken]))

    def migrate_airflow(self) -> None:
        env = {**os.environ, **airflow_env(self.settings, self.paths)}
        log = self.paths.logs / "airflow-db-migrate.log"
        with log.open("ab") as out:
            done = subprocess.run(  # noqa: S603
                [venv_bin("airflow"), "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0:
            raise StreamMLError(f"airflow db migrate failed; see {log}")

    # -- running -----------------------------------------------------------------------------------------------
    def up(self, say: Say, timeout: float = 240.0) -> None:
        """Start every program (idempotent: running programs are left alone) and wait until all are healthy."""
        self.check_prerequisites()
        self.check_disk()
        self.render()
        running = {n for n, p in self.supervisor.processes().items() if p["statename"] in ("RUNNING", "STARTING")}
        self.check_ports([p for p in self.programs if p.name not in running and p.long_running])
        if self.supervisor.running():
            self.supervisor.reload_config()  # stops the programs whose config changed: they are started below
            running = {n for n, p in self.supervisor.processes().items() if p["statename"] in ("RUNNING", "STARTING")}
        else:
            say("starting supervisord")
            self.supervisor.start_daemon()
        for stage in sorted({p.stage for p in self.programs}):
            group = [p for p in self.programs if p.stage == stage and p.long_running]
            if stage == 1:
                say("setting the accounts of Kafka (ACLs) and MinIO (buckets, users, policies)")
                ensure_kafka_accounts(self.settings.kafka)
                ensure_minio_accounts(self.settings.minio)
                say("migrating the Airflow database")
                self.migrate_airflow()
            if stage == 2:
                say("setting MLflow's accounts and permissions")
                ensure_mlflow_accounts(self.settings.mlflow, sqlite_uri(mlflow_auth_db(self.paths)))
            for p in group:
                if p.name not in running:
                    say(f"starting {p.name}")
                    self.supervisor.start(p.name)
            services = list(dict.fromkeys(p.service for p in group if p.service in health.CHECKS))
            if not services:
                continue
            say(f"waiting for {', '.join(services)}")
            try:
                health.wait_for(
                    services,
                    self.settings,
                    timeout=timeout,
                    on_wait=lambda down, left: say(
                        f"  still waiting for {', '.join(h.service for h in down)} ({left:.0f}s left)"
                    ),
                )
            except health.StillDown as exc:
                raise StreamMLError(self.down_report(exc)) from None

    def start(self, name: str) -> None:
        """Start one program of a running stack (jobs such as the replayer are started this way)."""
        if not any(p.name == name for p in self.programs):
            raise ConfigError(f"no program {name!r}; known: {', '.join(p.name for p in self.programs)}")
        if not self.supervisor.running():
            raise StreamMLError("the local stack is not running; start it with ./run.sh up")
        self.supervisor.start(name)

    def down(self, purge: bool = False) -> None:
        self.supervisor.shutdown()
        if purge and self.paths.state.exists():
            shutil.rmtree(self.paths.state)

    def status(self) -> list[ServiceStatus]:
        procs = self.supervisor.processes()
        rows = []
        for service in health.SERVICES + tuple(p.service for p in self.programs if p.service not in health.SERVICES):
            programs = [p for p in self.programs if p.service == service]
            infos = [procs.get(p.name, {}) for p in programs]
            states = sorted({i.get("statename", "STOPPED") for i in infos})
            pids = [i["pid"] for i in infos if i.get("pid")]
            ports = [port for p in programs for port, _ in p.ports[:1]]
            h = health.check(service, self.settings) if service in health.CHECKS else None
            finished = {"STOPPED", "EXITED", "STARTING", "RUNNING"}  # a job is fine unless it failed
            ok = (h is None or h.ok) and (
                states == ["RUNNING"] if all(p.long_running for p in programs) else set(states) <= finished
            )
            rows.append(ServiceStatus(service, pids, ports, "/".join(states), h.detail if h else "", ok))
        return rows
