# Sourced by kelp's scripts (not executed). Sets the shared paths; prints nothing.
#   KELP_ROOT         the repository root
#   KELP_CACHE        per-user cache outside the clone: ${XDG_CACHE_HOME:-$HOME/.cache}/kelp
#   CARGO_TARGET_DIR  $KELP_CACHE/target (one shared target dir, one profile)
#   KELP_VENV         the pinned Python venv (SeaweedFS binary + Kafka clients), keyed by versions
#   KELP_PYTHON       $KELP_VENV/bin/python
#   KELP_WEED         $KELP_VENV/bin/weed
# Pinned versions (change one here and the venv key changes with it, so a new venv gets built).
KELP_SEAWEEDFS_VERSION=4.48
KELP_KAFKA_PYTHON_VERSION=2.3.3
KELP_CONFLUENT_KAFKA_VERSION=2.16.1

KELP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KELP_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kelp"
CARGO_TARGET_DIR="$KELP_CACHE/target"
KELP_PY_TAG="$(python3 -c 'import sys; print("py%d%d" % sys.version_info[:2])' 2>/dev/null || echo py3)"
KELP_VENV="$KELP_CACHE/venv-${KELP_PY_TAG}-seaweedfs${KELP_SEAWEEDFS_VERSION}-kafkapython${KELP_KAFKA_PYTHON_VERSION}-confluentkafka${KELP_CONFLUENT_KAFKA_VERSION}"
KELP_PYTHON="$KELP_VENV/bin/python"
KELP_WEED="$KELP_VENV/bin/weed"
export KELP_ROOT KELP_CACHE CARGO_TARGET_DIR KELP_VENV KELP_PYTHON KELP_WEED
