#!/usr/bin/env bash
# streamml: one entry point for setup, the local stack, tests and verification.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# .env: your settings and secrets, readable only by you. Created from .env.example on first use with a random value
# for every change-me secret; change-me values left in an existing .env are replaced the same way (no mode accepts
# them). A running stack keeps the old secrets until `./run.sh down && ./run.sh up`.
generate_secrets() { # ENV EXAMPLE: every change-me value in ENV, and every change-me secret of EXAMPLE that ENV
  # lacks (one added by a newer version), becomes a fresh random secret; ENV stays 0600. Prints what it generated.
  python3 - "$1" "$2" <<'PY'
import os, re, secrets, sys
path, example = sys.argv[1:]
pattern = re.compile(r"^([A-Z][A-Z0-9_]*)=change-me[^\s#]*")
with open(path, encoding="utf-8") as f:
    lines = f.readlines()
present = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
with open(example, encoding="utf-8") as f:
    lines += [m.group(0) + "\n" for m in map(pattern.match, f) if m and m.group(1) not in present]
changed = [m.group(1) for m in map(pattern.match, lines) if m]
lines = [pattern.sub(lambda m: f"{m.group(1)}={secrets.token_hex(16)}", line) for line in lines]
tmp = f"{path}.tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as out:
    out.writelines(lines)
os.replace(tmp, path)
print(" ".join(changed))
PY
}
if [ ! -f .env ]; then
  (umask 077 && cp .env.example .env)
  generate_secrets .env .env.example >/dev/null
  printf '\033[1;36m[streamml]\033[0m wrote .env (mode 0600) with generated secrets; README.md, Credentials, says what each is\n'
else
  generated="$(generate_secrets .env .env.example)"
  [ -z "$generated" ] || printf '\033[1;36m[streamml]\033[0m generated secrets into .env (published change-me values are refused): %s\n' "$generated"
fi
chmod 600 .env
set -a
# shellcheck disable=SC1091
. ./.env
set +a

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
CACHE="${STREAMML_CACHE_DIR:-$HOME/.cache/streamml}"
CACHE="${CACHE/#\~/$HOME}"
MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c" # RELEASE.2026-02-12; MinIO tags are not semver, so a pseudo-version
export STREAMML_CACHE_DIR="$CACHE" PYSPARK_PYTHON="$PY" SPARK_LOCAL_IP=127.0.0.1

say() { printf '\033[1;36m[streamml]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[streamml] error:\033[0m %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
timed() { local t0=$SECONDS; "$@"; say "  done in $((SECONDS - t0))s"; }

# ---------------------------------------------------------------------------------------------------------------
# setup steps: each is skipped when its cache is valid
# ---------------------------------------------------------------------------------------------------------------
setup_venv() {
  local want; want="$(hash_of requirements.lock pyproject.toml)"
  if stamp_ok "$VENV/.streamml-lock" "$want"; then say "venv: up to date"; return; fi
  need python3.11 "install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)"
  if ! command -v uv >/dev/null 2>&1; then
    say "venv: installing uv from PyPI"
    python3.11 -m pip install --quiet --user uv || die "could not install uv (python3.11 -m pip install uv)"
    export PATH="$HOME/.local/bin:$PATH"
  fi
  say "venv: installing the pinned lock (requirements.lock) into .venv"
  [ -x "$PY" ] || uv venv --seed --python python3.11 "$VENV"
  VIRTUAL_ENV="$VENV" uv pip sync requirements.lock
  VIRTUAL_ENV="$VENV" uv pip install --no-deps -e .
  echo "$want" >"$VENV/.streamml-lock"
}

apt_install() { # apt_install PACKAGE WHY
  if [ "$(id -u)" != 0 ]; then die "$1 is missing ($2); install it as root: sudo apt-get install -y $1"; fi
  say "$1: installing the Debian package ($2)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null \
    || die "apt-get install $1 failed"
}

setup_chromium() {
  if command -v chromium >/dev/null 2>&1; then say "chromium: present"; return; fi
  apt_install chromium "headless browser for the dashboard tests and screenshots"
}

setup_redis() {
  if command -v redis-server >/dev/null 2>&1; then say "redis-server: present"; return; fi
  apt_install redis-server "the Redis server of the local stack"
  # Debian may start its own redis on 6379; the stack runs its own under supervisord.
  service redis-server stop >/dev/null 2>&1 || true
}

maven_copy() { # maven_copy NAME POM DEST
  local name="$1" pom="$2" dest="$3" want
  want="$(hash_of "$pom")"
  if stamp_ok "$dest/.stamp" "$want"; then say "$name: cached in $dest"; return; fi
  need java "install Java 17 (Debian: apt-get install openjdk-17-jdk-headless)"
  need mvn "install Maven (Debian: apt-get install maven)"
  say "$name: resolving from Maven Central into $dest"
  rm -rf "$dest" && mkdir -p "$dest"
  mvn -B -ntp -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest" \
    || die "$name: Maven could not resolve $pom (network to Maven Central? see the output above)"
  echo "$want" >"$dest/.stamp"
}

setup_minio() {
  local dest="$CACHE/bin"
  if stamp_ok "$dest/.minio-version" "$MINIO_VERSION" && [ -x "$dest/minio" ]; then say "minio: cached"; return; fi
  need go "install Go >= 1.24 (https://go.dev/doc/install, or Debian's golang-go if recent enough)"
  say "minio: building $MINIO_MODULE@$MINIO_VERSION with go install (a few minutes on a cold cache)"
  mkdir -p "$dest"
  GOBIN="$dest" GOFLAGS=-mod=mod go install "$MINIO_MODULE@$MINIO_VERSION" || die "go install of MinIO failed"
  echo "$MINIO_VERSION" >"$dest/.minio-version"
}

setup_all() {
  local t0=$SECONDS
  timed setup_venv
  timed setup_redis
  timed maven_copy "kafka" services/kafka/pom.xml "$CACHE/kafka/libs"
  timed maven_copy "spark s3a jars" services/spark/pom.xml "$CACHE/spark/jars"
  timed setup_minio
  say "setup complete in $((SECONDS - t0))s"
}

streamml() { "$VENV/bin/streamml" "$@"; }

docker_available() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

pick_mode() { # pick_mode [--local|--docker]: prints local or docker
  case "${1:-}" in
    --local) echo local ;;
    --docker) echo docker ;;
    "") echo local ;; # Compose is opt-in: it is checked statically only (no engine where streamml is built)
    *) die "unknown option $1 (use --local or --docker)" ;;
  esac
}

print_service_urls() { # the URLs both modes publish on the host
  cat <<EOF
  Airflow UI / REST v2  http://127.0.0.1:${STREAMML_AIRFLOW__PORT:-8080}  (user ${STREAMML_AIRFLOW__ADMIN_USER:-admin}, password from .env STREAMML_AIRFLOW__ADMIN_PASSWORD)
  MLflow                http://127.0.0.1:${STREAMML_MLFLOW__PORT:-5000}
  MinIO console         http://127.0.0.1:${STREAMML_MINIO__CONSOLE_PORT:-9001}  (user ${STREAMML_MINIO__ACCESS_KEY:-streamml}, password from .env STREAMML_MINIO__SECRET_KEY)
  MinIO S3 API          http://127.0.0.1:${STREAMML_MINIO__PORT:-9000}
  Dashboard             http://127.0.0.1:${STREAMML_DASHBOARD__PORT:-8501}  (Live, Kafka, Models, Pipelines, Predict)
  API + OpenAPI docs    http://127.0.0.1:${STREAMML_API__PORT:-8000}/docs  (mutating calls need header X-API-Key: STREAMML_API__API_KEY from .env)
  Kafka bootstrap       127.0.0.1:${STREAMML_KAFKA__PORT:-9092}
  Redis                 redis://127.0.0.1:${STREAMML_REDIS__PORT:-6379}/0
  Live metrics          http://127.0.0.1:${STREAMML_AGGREGATOR__METRICS_PORT:-9465}/metrics  (Prometheus: rolling AUC, freshness)
  Spark master UI       http://127.0.0.1:${STREAMML_SPARK__MASTER_UI_PORT:-8082}  (jobs use it with STREAMML_SPARK__MASTER=spark://...)
EOF
}

print_urls() {
  print_service_urls
  cat <<EOF
  Scorer metrics        http://127.0.0.1:${STREAMML_SCORER__METRICS_PORT:-9464}/metrics  (Prometheus; scorer-1 on ${STREAMML_SCORER__REPLICA_METRICS_PORT:-9470}, ... after ./run.sh scale N)
  Spark worker UI       http://127.0.0.1:${STREAMML_SPARK__WORKER_UI_PORT:-8083}
  Logs                  $ROOT/${STREAMML_STATE_DIR:-.local}/logs/   (./run.sh logs SERVICE)
EOF
}

compose() { docker compose --env-file .env -f docker-compose.yml "$@"; }

# ---------------------------------------------------------------------------------------------------------------
# Docker Compose mode (docker-compose.yml, guide in docs/compose.md)
# ---------------------------------------------------------------------------------------------------------------
COMPOSE_JOBS_PROFILE=replay # profile of the on-demand jobs (the replayer): `up` leaves them alone
DOCKER_SECRETS=(STREAMML_DASHBOARD__ADMIN_PASSWORD STREAMML_KAFKA__PASSWORD
  STREAMML_KAFKA__PROGRAM_PASSWORDS__SCORER STREAMML_KAFKA__PROGRAM_PASSWORDS__UPDATER
  STREAMML_KAFKA__PROGRAM_PASSWORDS__AGGREGATOR STREAMML_KAFKA__PROGRAM_PASSWORDS__ARCHIVE
  STREAMML_KAFKA__PROGRAM_PASSWORDS__REPLAYER STREAMML_KAFKA__PROGRAM_PASSWORDS__API
  STREAMML_KAFKA__PROGRAM_PASSWORDS__DASHBOARD STREAMML_KAFKA__PROGRAM_PASSWORDS__AIRFLOW
  STREAMML_MLFLOW__PASSWORD STREAMML_MLFLOW__SERVER_SECRET_KEY
  STREAMML_MINIO__PROGRAM_SECRET_KEYS__MLFLOW STREAMML_MINIO__PROGRAM_SECRET_KEYS__AIRFLOW
  STREAMML_MINIO__PROGRAM_SECRET_KEYS__ARCHIVE
  STREAMML_MLFLOW__PROGRAM_PASSWORDS__AIRFLOW STREAMML_MLFLOW__PROGRAM_PASSWORDS__API
  STREAMML_MLFLOW__PROGRAM_PASSWORDS__SCORER STREAMML_MLFLOW__PROGRAM_PASSWORDS__AGGREGATOR
  STREAMML_REDIS__PROGRAM_PASSWORDS__SCORER STREAMML_REDIS__PROGRAM_PASSWORDS__UPDATER
  STREAMML_REDIS__PROGRAM_PASSWORDS__AGGREGATOR STREAMML_REDIS__PROGRAM_PASSWORDS__ARCHIVE
  STREAMML_REDIS__PROGRAM_PASSWORDS__REPLAYER STREAMML_REDIS__PROGRAM_PASSWORDS__API
  STREAMML_REDIS__PROGRAM_PASSWORDS__DASHBOARD STREAMML_REDIS__PROGRAM_PASSWORDS__AIRFLOW
  STREAMML_SPARK__AUTH_SECRET
  STREAMML_REDIS__PASSWORD STREAMML_MINIO__SECRET_KEY STREAMML_MLFLOW__SIGNING_KEY STREAMML_AIRFLOW__ADMIN_PASSWORD STREAMML_AIRFLOW__JWT_SECRET STREAMML_API__API_KEY POSTGRES_PASSWORD)

# compose with the jobs' profile on, so that run, ps and down also see the replayer
compose_all() { compose --profile "$COMPOSE_JOBS_PROFILE" "$@"; }

# A streamml command in a one-off container of the replayer's service: same image, settings and secrets as the
# services, service names inside the network; the host needs no venv and no published port.
compose_streamml() { compose_all run --rm --no-deps -T replayer streamml "$@"; }

docker_preflight() {
  docker_available || die "no Docker engine answers (docker info failed); use ./run.sh deploy --local"
  docker compose version >/dev/null 2>&1 || die "the Docker Compose v2 plugin is missing (docker compose version failed)"
  # Compose stops on a missing secret, but the containers' Settings refuse the change-me defaults only once running,
  # which up --wait would report as a timeout; say it now.
  local v bad=()
  for v in "${DOCKER_SECRETS[@]}"; do
    case "${!v:-}" in "" | change-me*) bad+=("$v") ;; esac
  done
  [ ${#bad[@]} -eq 0 ] || die "docker mode refuses default secrets; set real values in .env for: ${bad[*]} (see docs/compose.md, Credentials)"
}

deploy_docker() {
  say "mode: docker (Docker Compose, docker-compose.yml)"
  docker_preflight
  local t0=$SECONDS
  say "building the images (streamml-base from requirements.lock, then the images built FROM it)"
  compose build
  say "starting every service and waiting until each one is healthy"
  if ! compose up -d --wait --wait-timeout 900; then
    compose_all ps --all
    die "the stack did not become healthy; see docker compose logs SERVICE for the services not healthy above"
  fi
  say "stack healthy in $((SECONDS - t0))s"
  if ! compose_streamml features current >/dev/null 2>&1; then
    say "first deploy: running the movielens_training DAG once through Airflow's REST API v2 (the Airflow UI shows it too)"
    compose_streamml pipelines trigger movielens_training --wait \
      || die "movielens_training failed; the stack is up, see the task logs in the Airflow UI"
  else
    compose_streamml features upgrade || die "the online features could not be upgraded to this code's state format"
  fi
  say "starting a replay of the stream period at ${STREAMML_REPLAY__RATE:-50} requests/s (follow: docker compose logs -f replayer)"
  compose_all up -d --no-deps replayer
  print_docker_urls
}

print_docker_urls() {
  print_service_urls
  cat <<EOF
  Kafka UI              http://127.0.0.1:8081
  Scorer metrics        inside the network only, scorer:9464/metrics per replica (docker compose exec scorer curl -s 127.0.0.1:9464/metrics)
  Logs                  docker compose logs -f SERVICE     Status  ./run.sh status --docker
  More scorers          docker compose --env-file .env up -d --scale scorer=3   (at most STREAMML_KAFKA__PARTITIONS get work)
EOF
}

status_docker() { # table of every container; exit 1 when a server is not healthy or a job failed
  docker_available || die "no Docker engine answers (docker info failed)"
  compose_all ps --all --format 'table {{.Service}}\t{{.State}}\t{{.Health}}\t{{.ExitCode}}\t{{.Ports}}'
  local down
  down="$(compose_all ps --all --format '{{.Service}}|{{.State}}|{{.Health}}|{{.ExitCode}}' | awk -F'|' '
    $2 == "running" && ($3 == "" || $3 == "healthy") { next }  # a server that is healthy, or a job still running
    $2 == "exited" && $4 == "0" && $3 == "" { next }            # a one-shot job that succeeded
    { printf "%s (%s%s%s) ", $1, $2, ($3 == "" ? "" : ", " $3), ($2 == "exited" ? ", exit " $4 : "") }')"
  if [ -z "$(compose_all ps --all --quiet)" ]; then say "no containers: ./run.sh deploy --docker starts them"; return 1; fi
  if [ -n "$down" ]; then say "not healthy: $down"; return 1; fi
  say "every container is healthy (servers) or done (jobs)"
}

# ---------------------------------------------------------------------------------------------------------------
# commands: a line "## name: text" above each function is its help
# ---------------------------------------------------------------------------------------------------------------

## help: show this help
cmd_help() {
  echo "usage: ./run.sh COMMAND [options]"
  echo
  grep -E '^## [a-z]+:' "$0" | sed -E 's/^## ([a-z]+): /  \1\t/' | expand -t 12
}

## setup: install what is missing (venv, redis-server, Kafka and Spark jars, MinIO); cached and idempotent
cmd_setup() { setup_all; }

## deploy: setup, start every service, train once on first deploy, start a replay, print the URLs [--local (default)|--docker]
cmd_deploy() {
  local mode; mode="$(pick_mode "${1:-}")"
  if [ "$mode" = docker ]; then
    deploy_docker
    return
  else
    say "mode: local (real processes under supervisord; no Docker engine needed)"
    setup_all
    # The data set first: offline without STREAMML_MOVIELENS_DIR this fails in seconds, before anything starts.
    streamml data resolve || die "no MovieLens data set, so nothing was started (the error above names the fix)"
    local t0=$SECONDS
    streamml stack up
    say "stack healthy in $((SECONDS - t0))s"
    if ! streamml features current >/dev/null 2>&1; then
      say "first deploy: running the movielens_training DAG once (Airflow UI shows its progress too)"
      streamml pipelines trigger movielens_training --wait \
        || die "movielens_training failed; the stack is up, see the task logs in the Airflow UI"
    else
      streamml features upgrade || die "the online features could not be upgraded to this code's state format"
    fi
    start_replay
  fi
  print_urls
}

wait_scorer_serving() { # the scorer picks up a new champion within seconds; replaying before that only builds a queue
  local url="http://127.0.0.1:${STREAMML_SCORER__METRICS_PORT:-9464}/metrics" i
  for i in $(seq 60); do
    "$PY" -c "import httpx,sys; sys.exit('streamml_scorer_model_version ' not in httpx.get('$url', timeout=2).text)" \
      2>/dev/null && return
    sleep 2
  done
  say "the scorer is not serving a model yet (./run.sh logs scorer); the replay's first requests will wait in Kafka"
}

start_replay() {
  if [ "${STREAMML_REPLAY__AGAIN:-false}" != true ] && streamml features replayed >/dev/null 2>&1; then
    say "$(streamml features replayed); not replaying it again (each rating would be applied once anyway)."
    say "  replay it anyway: STREAMML_REPLAY__AGAIN=true ./run.sh deploy, or streamml replay --again"
    return
  fi
  wait_scorer_serving
  say "starting a replay of the stream period at ${STREAMML_REPLAY__RATE:-50} requests/s (log: $(streamml stack log-path replayer))"
  streamml stack start replayer
}

## up: start the local stack (running services are left alone)
cmd_up() {
  setup_all
  streamml stack up
  if streamml features current >/dev/null 2>&1; then
    streamml features upgrade || die "the online features could not be upgraded to this code's state format"
  fi
  print_urls
}

## scale: run N scorers in one consumer group (kept in .env as STREAMML_SCORER__REPLICAS) [--docker]
cmd_scale() {
  local n="${1:-}"
  [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "usage: ./run.sh scale N [--docker] (1-32 scorers; at most STREAMML_KAFKA__PARTITIONS=${STREAMML_KAFKA__PARTITIONS:-3} get partitions)"
  if grep -q '^STREAMML_SCORER__REPLICAS=' .env; then
    sed -i "s/^STREAMML_SCORER__REPLICAS=.*/STREAMML_SCORER__REPLICAS=$n/" .env
  else
    printf 'STREAMML_SCORER__REPLICAS=%s\n' "$n" >>.env
  fi
  export STREAMML_SCORER__REPLICAS="$n"
  if [ "${2:-}" = --docker ]; then compose up -d --no-recreate --scale scorer="$n" scorer; return; fi
  streamml stack scale "$n"
}

## down: stop every service [--purge also deletes the data under .local/] [--docker]
cmd_down() {
  local purge=() docker=0
  for a in "$@"; do case "$a" in --purge) purge=(--purge) ;; --docker) docker=1 ;; *) die "unknown option $a" ;; esac; done
  if [ "$docker" = 1 ]; then compose_all down --remove-orphans ${purge[0]:+-v}; return; fi
  [ -x "$VENV/bin/streamml" ] || { say "nothing to stop (no venv)"; return; }
  streamml stack down "${purge[@]}"
}

## status: check every service for real (table of service, pid, port, state, detail) [--docker]
cmd_status() {
  if [ "${1:-}" = --docker ]; then status_docker; return; fi
  streamml health
}

## logs: follow a service's log (kafka, redis, minio, mlflow, airflow-scheduler, ...); no name lists them
cmd_logs() {
  local dir="$ROOT/${STREAMML_STATE_DIR:-.local}/logs"
  if [ -z "${1:-}" ]; then ls "$dir" 2>/dev/null || say "no logs yet in $dir"; return; fi
  local file; file="$(streamml stack log-path "$1")"
  [ -f "$file" ] || die "no log yet at $file"
  tail -n 200 -F "$file"
}

## test: setup, start the stack if it is not running, run unit and integration tests, stop what it started
cmd_test() {
  setup_all
  setup_chromium
  local started=0 rc=0 up_pid="" up_log="$ROOT/${STREAMML_STATE_DIR:-.local}/stack-up.log"
  if ! streamml stack running; then
    mkdir -p "$(dirname "$up_log")"
    if [ $# -eq 0 ]; then
      # The unit tests need no server: they run while the stack starts (about 2 minutes saved).
      say "starting the local stack for the tests in the background (log: $up_log), the unit tests meanwhile"
      streamml stack up >"$up_log" 2>&1 &
      up_pid=$!
    else
      say "starting the local stack for the tests"
      streamml stack up
    fi
    started=1
  fi
  # Order matters: the integration tests train the champion that the end-to-end tests use, and the closed loop
  # (tests/loop) replaces that champion, so it runs last.
  if [ $# -eq 0 ]; then
    "$VENV/bin/python" -m pytest tests/unit || rc=$?
    if [ -n "$up_pid" ] && ! wait "$up_pid"; then
      cat "$up_log" >&2
      streamml stack down || true
      die "the stack did not come up for the integration tests (above)"
    fi
    set -- tests/integration tests/e2e tests/loop
  fi
  "$VENV/bin/python" -m pytest "$@" || rc=$?
  if [ "$started" = 1 ]; then say "stopping the stack the tests started"; streamml stack down || true; fi
  return "$rc"
}

## verify: end-to-end check of the running platform; exits non-zero on any failure
cmd_verify() { "$PY" verification/verify_streaming.py "$@"; }

main() {
  local cmd="${1:-help}"
  shift || true
  declare -F "cmd_$cmd" >/dev/null || { cmd_help; die "unknown command: $cmd"; }
  "cmd_$cmd" "$@"
}

main "$@"
