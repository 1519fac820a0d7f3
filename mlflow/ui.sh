#!/usr/bin/env bash
# Serves the MLflow UI on 127.0.0.1 over the project's local tracking store (RECMAMBA_HOME/mlflow).
set -euo pipefail
project="$(cd "$(dirname "$0")/.." && pwd)"
home="${RECMAMBA_HOME:-$project}"
store="$home/mlflow"
mkdir -p "$store/artifacts"
mlflow_bin="$project/.venv/bin/mlflow"
[ -x "$mlflow_bin" ] || mlflow_bin="mlflow"
exec "$mlflow_bin" ui \
  --backend-store-uri "sqlite:///$store/mlflow.db" \
  --default-artifact-root "$store/artifacts" \
  --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}" "$@"
