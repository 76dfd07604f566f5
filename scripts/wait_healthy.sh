#!/usr/bin/env bash
# Poll URL/health until it answers 200.
#   usage: scripts/wait_healthy.sh URL [TIMEOUT_SECONDS]   (default timeout 60)
#   exit:  0 healthy, 2 timeout / unreachable, 3 bad arguments
# A URL's user:password@ is used for the request but never shown.
set -u

fail() {  # usage first, so the last line is the one-line error
  echo "usage: $0 URL [TIMEOUT_SECONDS]  (e.g. $0 http://localhost:8080 120)" >&2
  echo "error: $1" >&2
  exit 3
}
redact() { sed -E 's#//[^/@]*@#//***@#' <<<"$1"; }

[ $# -ge 1 ] && [ $# -le 2 ] || fail "expected URL [TIMEOUT_SECONDS], got $# arguments"
url="${1%/}"
timeout="${2:-60}"
# The same URL rule as the project (scheme, host, numeric port in range, no whitespace).
shown=$(python3 - "$url" <<'PY'
import sys
from urllib.parse import urlsplit
raw = sys.argv[1]
try:
    parts = urlsplit(raw)
    _ = parts.port
    ok = parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in raw)
except ValueError:
    ok = False
if not ok:
    sys.exit(1)
print(raw.replace(parts.netloc, "***@" + parts.netloc.rsplit("@", 1)[1]) if "@" in parts.netloc else raw)
PY
) || fail "not an http(s) URL: $(redact "$1")"
[[ "$timeout" =~ ^[0-9]{1,6}$ ]] && [ "$timeout" -gt 0 ] \
  || fail "TIMEOUT_SECONDS must be a positive integer of at most 6 digits, got '$timeout'"

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
    echo "healthy: $shown after ${elapsed}s"
    exit 0
  fi
  case "$code" in
    000) what="unreachable" ;;
    503) what="loading model" ;;
    *)   what="HTTP $code" ;;
  esac
  [ "$what" != "$last" ] && echo "waiting for $shown/health: $what (${elapsed}s/${timeout}s)" >&2
  last="$what"
  if [ "$elapsed" -ge "$timeout" ]; then
    echo "error: $shown not healthy after ${timeout}s (last: $what)" >&2
    exit 2
  fi
  sleep 1
done
