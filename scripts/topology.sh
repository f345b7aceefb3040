#!/usr/bin/env bash
# The production topology on one host, as separate processes: the code location's gRPC server,
# dagster-webserver and dagster-daemon loading it through workspace.grpc.yaml. Runs are queued
# (dagster.yaml: concurrency per dropzone host) and launched by the code server as processes of
# their own. State lives in PostgreSQL: DAGSTER_HOME/dagster.yaml is ./dagster.yaml, DAGSTER_PG_*
# point at Dagster's database, ORDERFLOW_DATABASE_URL at OrderFlow's.
#
#   scripts/topology.sh code-server|webserver|daemon   one process in the foreground (systemd, tests)
#   scripts/topology.sh up | down | status             all three in the background, logs and pids
#                                                      in $ORDERFLOW_TOPOLOGY_DIR
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${ORDERFLOW_VENV_BIN:-$PWD/.venv/bin}
WORKSPACE=${ORDERFLOW_WORKSPACE:-$PWD/workspace.grpc.yaml}
export ORDERFLOW_CODE_SERVER_HOST=${ORDERFLOW_CODE_SERVER_HOST:-127.0.0.1}
export ORDERFLOW_CODE_SERVER_PORT=${ORDERFLOW_CODE_SERVER_PORT:-4266}
WEB_HOST=${ORDERFLOW_WEBSERVER_HOST:-127.0.0.1}
WEB_PORT=${ORDERFLOW_WEBSERVER_PORT:-3000}
RUN_DIR=${ORDERFLOW_TOPOLOGY_DIR:-${DAGSTER_HOME:-$PWD/.orderflow}/topology}
SERVICES=(code-server daemon webserver)

need_home() {
  : "${DAGSTER_HOME:?set DAGSTER_HOME to a folder holding dagster.yaml (a copy of ./dagster.yaml)}"
  [ -f "$DAGSTER_HOME/dagster.yaml" ] || { echo "no $DAGSTER_HOME/dagster.yaml" >&2; exit 2; }
}

running() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

case "${1:-}" in
  code-server)
    need_home
    # The code server's children are the run workers (the default run launcher asks it to start
    # one process per run); it answers sensors and schedules for the daemon.
    exec "$BIN/dagster" api grpc -m orderflow_exports \
      -h "$ORDERFLOW_CODE_SERVER_HOST" -p "$ORDERFLOW_CODE_SERVER_PORT" --location-name orderflow_exports
    ;;
  webserver)
    need_home
    exec "$BIN/dagster-webserver" -w "$WORKSPACE" -h "$WEB_HOST" -p "$WEB_PORT"
    ;;
  daemon)
    need_home
    exec "$BIN/dagster-daemon" run -w "$WORKSPACE"
    ;;
  up)
    need_home
    mkdir -p "$RUN_DIR"
    for service in "${SERVICES[@]}"; do
      if running "$service"; then echo "$service already running"; continue; fi
      setsid "$0" "$service" >"$RUN_DIR/$service.log" 2>&1 </dev/null &
      echo $! >"$RUN_DIR/$service.pid"
      echo "$service started (pid $!, log $RUN_DIR/$service.log)"
      if [ "$service" = code-server ]; then
        # The daemon and webserver retry a missing server, but start them on a loaded one.
        for _ in $(seq 120); do
          "$BIN/dagster" api grpc-health-check -h "$ORDERFLOW_CODE_SERVER_HOST" \
            -p "$ORDERFLOW_CODE_SERVER_PORT" >/dev/null 2>&1 && break
          sleep 1
        done
      fi
    done
    echo "UI on http://$WEB_HOST:$WEB_PORT"
    ;;
  down)
    for service in webserver daemon code-server; do
      running "$service" || continue
      pid=$(cat "$RUN_DIR/$service.pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      rm -f "$RUN_DIR/$service.pid"
      echo "$service stopped"
    done
    ;;
  status)
    for service in "${SERVICES[@]}"; do
      if running "$service"; then echo "$service running (pid $(cat "$RUN_DIR/$service.pid"))"
      else echo "$service stopped"; fi
    done
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
