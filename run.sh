#!/usr/bin/env bash
# streamml: one entry point for setup, the local stack, tests and verification.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

[ -f .env ] || cp .env.example .env
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

setup_redis() {
  if command -v redis-server >/dev/null 2>&1; then say "redis-server: present"; return; fi
  if [ "$(id -u)" != 0 ]; then
    die "redis-server is missing; install it as root: sudo apt-get install -y redis-server"
  fi
  say "redis-server: installing the Debian package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
    || die "apt-get install redis-server failed"
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
    "") if docker_available; then echo docker; else echo local; fi ;;
    *) die "unknown option $1 (use --local or --docker)" ;;
  esac
}

print_urls() {
  cat <<EOF
  Airflow UI / REST v2  http://127.0.0.1:${STREAMML_AIRFLOW__PORT:-8080}  (user ${STREAMML_AIRFLOW__ADMIN_USER:-admin}, password from .env STREAMML_AIRFLOW__ADMIN_PASSWORD)
  MLflow                http://127.0.0.1:${STREAMML_MLFLOW__PORT:-5000}
  MinIO console         http://127.0.0.1:${STREAMML_MINIO__CONSOLE_PORT:-9001}  (user ${STREAMML_MINIO__ACCESS_KEY:-streamml}, password from .env STREAMML_MINIO__SECRET_KEY)
  MinIO S3 API          http://127.0.0.1:${STREAMML_MINIO__PORT:-9000}
  Kafka bootstrap       127.0.0.1:${STREAMML_KAFKA__PORT:-9092}
  Redis                 redis://127.0.0.1:${STREAMML_REDIS__PORT:-6379}/0
  Logs                  $ROOT/${STREAMML_STATE_DIR:-.local}/logs/   (./run.sh logs SERVICE)
EOF
}

compose() { docker compose --env-file .env -f docker-compose.yml "$@"; }

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

## deploy: setup, start every service, train once on first deploy, start a replay, print the URLs [--local|--docker, default: docker if an engine answers]
cmd_deploy() {
  local mode; mode="$(pick_mode "${1:-}")"
  if [ "$mode" = docker ]; then
    say "mode: docker (Docker Compose)"
    docker_available || die "no Docker engine answers (docker info failed); use ./run.sh deploy --local"
    compose up -d --build --wait
  else
    say "mode: local (real processes under supervisord; no Docker engine needed)"
    setup_all
    local t0=$SECONDS
    streamml stack up
    say "stack healthy in $((SECONDS - t0))s"
    if ! streamml features current >/dev/null 2>&1; then
      say "first deploy: running the movielens_training DAG once (Airflow UI shows its progress too)"
      streamml pipelines trigger movielens_training --wait \
        || die "movielens_training failed; the stack is up, see the task logs in the Airflow UI"
    fi
    start_replay
  fi
  print_urls
}

start_replay() {
  local log="$ROOT/${STREAMML_STATE_DIR:-.local}/logs/replay.log"
  if pgrep -f "streamml replay" >/dev/null 2>&1; then say "a replay is already running (log: $log)"; return; fi
  say "starting a replay of the stream period at ${STREAMML_REPLAY_RATE:-50} requests/s (log: $log)"
  nohup "$VENV/bin/streamml" replay --rate "${STREAMML_REPLAY_RATE:-50}" --feedback-delay 1 >>"$log" 2>&1 &
}

## up: start the local stack (running services are left alone)
cmd_up() { setup_all; streamml stack up; print_urls; }

## down: stop every service [--purge also deletes the data under .local/] [--docker]
cmd_down() {
  local purge=() docker=0
  for a in "$@"; do case "$a" in --purge) purge=(--purge) ;; --docker) docker=1 ;; *) die "unknown option $a" ;; esac; done
  if [ "$docker" = 1 ]; then compose down ${purge[0]:+-v}; return; fi
  [ -x "$VENV/bin/streamml" ] || { say "nothing to stop (no venv)"; return; }
  pkill -f "$VENV/bin/streamml replay" 2>/dev/null && say "stopped the running replay" || true
  streamml stack down "${purge[@]}"
}

## status: check every service for real (table of service, pid, port, state, detail) [--docker]
cmd_status() {
  if [ "${1:-}" = --docker ]; then compose ps; return; fi
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
  local started=0
  if ! streamml stack running; then
    say "starting the local stack for the tests"
    streamml stack up
    started=1
  fi
  local rc=0
  # Order matters: the integration tests train the champion that the end-to-end tests use.
  if [ $# -eq 0 ]; then set -- tests/unit tests/integration tests/e2e; fi
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
