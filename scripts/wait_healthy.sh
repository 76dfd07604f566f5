#!/usr/bin/env bash
# Poll URL/health until it answers 200.
#   usage: scripts/wait_healthy.sh URL [TIMEOUT_SECONDS]   (default timeout 60)
#   exit:  0 healthy, 2 timeout / unreachable, 3 bad arguments
set -u

usage() { echo "usage: $0 URL [TIMEOUT_SECONDS]  (e.g. $0 http://localhost:8080 120)" >&2; exit 3; }

[ $# -ge 1 ] && [ $# -le 2 ] || usage
url="${1%/}"
timeout="${2:-60}"
[[ "$url" =~ ^https?://[^/[:space:]]+ ]] || { echo "error: not an http(s) URL: $1" >&2; usage; }
[[ "$timeout" =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ] || { echo "error: TIMEOUT_SECONDS must be a positive integer, got '$timeout'" >&2; usage; }

status() {  # prints the HTTP status of URL/health, 000 when nothing answers
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/health" || true
  else
    python3 - "$url/health" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status, end="")
except urllib.error.HTTPError as e:
    print(e.code, end="")
except Exception:
    print("000", end="")
PY
  fi
}

start=$SECONDS
last=""
while :; do
  code=$(status)
  elapsed=$((SECONDS - start))
  if [ "$code" = "200" ]; then
    echo "healthy: $url after ${elapsed}s"
    exit 0
  fi
  case "$code" in
    000) what="unreachable" ;;
    503) what="loading model" ;;
    *)   what="HTTP $code" ;;
  esac
  [ "$what" != "$last" ] && echo "waiting for $url/health: $what (${elapsed}s/${timeout}s)" >&2
  last="$what"
  if [ "$elapsed" -ge "$timeout" ]; then
    echo "error: $url not healthy after ${timeout}s (last: $what)" >&2
    exit 2
  fi
  sleep 1
done
