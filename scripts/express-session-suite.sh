#!/usr/bin/env bash
# Runs express-session's own test suite against MemcachedStore (see docs/express-session-suite.md).
# Usage: scripts/express-session-suite.sh <express-session checkout, devDependencies installed> [plain|genid|sticky ...]
# Copies the checkout (without .git) to a temporary directory, starts 3 memcached processes on free loopback ports,
# and runs mocha there with scripts/express-session-shim.js, once per configuration. Nothing is copied into this repo.
set -euo pipefail

checkout=$(cd "${1:?usage: $0 <express-session checkout> [plain|genid|sticky ...]}" && pwd)
shift
configs=("${@:-plain genid sticky}")
read -r -a configs <<< "${configs[*]}"
repo=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$checkout/node_modules/.bin/mocha" ] || { echo "run 'npm install' in $checkout first" >&2; exit 2; }

(cd "$repo" && npx tsc -p tsconfig.build.json)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

tar -C "$checkout" --exclude=.git --exclude=node_modules -cf - . | tar -C "$work" -xf -
ln -s "$checkout/node_modules" "$work/node_modules"
(cd "$work" && sh test/support/gencert.sh >/dev/null 2>&1)
# The suite's sid() helper cuts the signed cookie at the first '.'; msm's sticky ids carry '.<route>' and the
# signature (base64) has no '.', so it is cut at the last one. No test or assertion is changed.
sed -i "s/value.substring(2, value.indexOf('.'))/value.substring(2, value.lastIndexOf('.'))/" "$work/test/session.js"
grep -q "value.lastIndexOf('.')" "$work/test/session.js" || { echo "test/session.js: sid() helper not found" >&2; exit 2; }

# Free ports from the kernel, then memcached on each; wait until each answers.
read -r -a ports <<< "$(node -e '
  const net = require("net");
  Promise.all([0, 1, 2].map(() => new Promise((r) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => r(p)); }); })))
    .then((ps) => console.log(ps.join(" ")));')"
nodes=""
user=()
[ "$(id -u)" = 0 ] && user=(-u nobody) # memcached refuses to run as root
for i in "${!ports[@]}"; do
  memcached "${user[@]}" -l 127.0.0.1 -p "${ports[$i]}" -U 0 -m 64 &
  pids+=($!)
  nodes+="${nodes:+,}n$((i + 1)):127.0.0.1:${ports[$i]}"
done
for p in "${ports[@]}"; do
  up=0
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { up=1; break; }; sleep 0.1; done
  [ $up = 1 ] || { echo "memcached on port $p did not start" >&2; exit 2; }
done

status=0
for config in "${configs[@]}"; do
  echo "=== express-session suite, configuration: $config ($nodes)"
  # Each configuration starts on empty nodes.
  for p in "${ports[@]}"; do
    exec 3<>"/dev/tcp/127.0.0.1/$p"; printf 'flush_all\r\n' >&3; read -r _ <&3; exec 3<&-
  done
  (cd "$work" && ESS_CONFIG="$config" ESS_DIST="$repo/dist/index.js" ESS_NODES="$nodes" \
    NO_DEPRECATION=express-session node_modules/.bin/mocha --require "$repo/scripts/express-session-shim.js" \
    --check-leaks --exit --reporter "${ESS_REPORTER:-spec}" test/) || status=1
done
exit $status
