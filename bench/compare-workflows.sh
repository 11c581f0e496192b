#!/usr/bin/env bash
# Workflow throughput side by side, in one invocation: Tenancy's engine (SQLite and
# PostgreSQL), DBOS 3.4 (Python, against the same PostgreSQL) and Restate 1.7 (its own
# log), each running 5-step workflows with 64 in flight. The peers come from
# ../shared/bench/peers (run its setup.sh once: PEERS_DIR=/tmp/tenancy-peers bash setup.sh).
#
#   bash bench/compare-workflows.sh [N]        # N executions per system (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
PEERS=${PEERS:-$(cd ../shared/bench/peers 2>/dev/null && pwd || echo /work/shared/bench/peers)}
export PEERS_DIR=${PEERS_DIR:-/tmp/tenancy-peers}
cargo build -q --release -p tenancy-bench
echo "== tenancy (sqlite)"; ./target/release/tenancy-bench workflow-throughput --executions "$N" 2>/dev/null | tail -4
echo "== tenancy (postgres)"; ./target/release/tenancy-bench workflow-throughput --executions "$N" --database-url "$PG" 2>/dev/null | tail -4
echo "== dbos (queue mode, same PostgreSQL)"
PEERS_PG_URL=${PG%/*} MODES=queue NS=$N REPS=1 bash "$PEERS/run_dbos.sh" | tail -1
echo "== restate"
NS=$N REPS=1 CONC=64 bash "$PEERS/run_restate.sh" | tail -1
