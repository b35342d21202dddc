#!/usr/bin/env bash
# make demo-live: the demo's gate, live, round after round until Ctrl-C, for
# watching the guard's screen in a browser. It makes what it needs itself,
# offline, in a few seconds: an authority's keys and trust list, the demo's
# people and their credentials, and a revocation list (钱七's, as in the
# demo); the checkpoint has no link and reads both lists from files.
# checkpointd plays the gate video as its camera with loop = true, which
# opens the file anew at each end. A code is good only for 30 s after the
# phone signs it, and a code seen twice is a replay, so the same video
# cannot simply play again: each round is rendered anew, every phone
# signing for the moment it is shown in that round, and put in place of the
# file while the round before plays. The thermometer's script starts again
# with each round.
# Usage: scripts/demo-live.sh BIN_DIR WORK_DIR
set -euo pipefail

bin=${1:?bin dir}
work=${2:?work dir}
rm -rf "$work"
mkdir -p "$work"
cd "$work"

authority() { "$bin/authority" "$@" >/dev/null; }
at() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

pids=()
stop_all() {
  for p in "${pids[@]}"; do
    pkill -P "$p" 2>/dev/null || true # a round's renderer
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 0' INT TERM

echo "== An authority's keys and trust list, the demo's people and their credentials (offline)"
authority keygen --out authority
authority trust --root authority/root.key --issuer authority/issuer.pub --region 44 \
  --issuer-code GD --issuer-name "Guangdong Health Code Authority" --out trust.cbor
authority keygen --out forger
# The demo's people (scripts/demo.sh): name, ID number, colour, extra flags.
people=(
  "王芳|44030519880506122X|green|"
  "李四|440304197702153315|yellow|"
  "赵六|440106199512300418|red|"
  "钱七|440303200101014422|green|"
  "孙八|440307198203036636|green|--at $(date -u -d '-48 hours' +%Y-%m-%dT%H:%M:%SZ)"
  "吴十|440305194806151210|green|--static --valid 168h"
  "郑一|440304198107200011|green|"
  "冯二|440306199203110021|green|"
  "陈三|440303197511230035|green|"
)
i=0
for p in "${people[@]}"; do
  IFS='|' read -r name num colour extra <<<"$p"
  i=$((i + 1))
  mkdir -p "people/$i"
  "$bin/holder" keygen --out "people/$i" >/dev/null
  holderflag=(--holder "people/$i/holder.pub")
  [[ " $extra " == *" --static "* ]] && holderflag=()
  # shellcheck disable=SC2086
  authority issue --issuer authority/issuer.key --issuer-code GD --region 44 "${holderflag[@]}" \
    --id-number "$num" --name "$name" --colour "$colour" --out "people/$i/credential.cbor" $extra
done
mkdir -p people/forged
"$bin/holder" keygen --out people/forged >/dev/null
authority issue --issuer forger/issuer.key --issuer-code GD --region 44 --holder people/forged/holder.pub \
  --id-number 440305199909091233 --name 冒名者 --colour green --out people/forged/credential.cbor
authority revoke --root authority/root.key --id-number 440303200101014422 --list revocations.cbor

# The demo's thermometer readings and cards, again each round.
cat >sim.json <<JSON
{"query": "M",
 "readings": ["36.5", "36.6", "36.4", "36.7", "36.3", "36.4", "36.5", "38.2", "38.1", "28.4", "36.7", "36.8", "36.6", "36.5"],
 "card_before_reading": {"6": "440305194806151210,吴十", "12": "440305199909091233,冒用者"},
 "card_after_decisions": {"11": "周九,440305193904051112"}}
JSON
"$bin/gatesim" serve -loop -script sim.json -paths devices.txt -decisions decisions.jsonl 2>>gatesim.log &
sim_pid=$!
pids+=("$sim_pid")
for _ in $(seq 100); do [ -s devices.txt ] && break; sleep 0.1; done

screen_port=8431
while (: </dev/tcp/127.0.0.1/$screen_port) 2>/dev/null; do screen_port=$((screen_port + 1)); done
cat >checkpoint.toml <<TOML
name = "demo-live"
[trust]
root_key = "authority/root.pub"
trust_list = "trust.cbor"
revocations = "revocations.cbor"
[store]
path = "checkpoint.db"
[screen]
listen = "127.0.0.1:$screen_port"

[[lane]]
name = "lane-1"
camera = { device = "gate.avi", pace = 15, loop = true }
thermometer = { kind = "serial", port = "$(sed -n 's/^thermometer=//p' devices.txt)", query = "M\\r\\n" }
id_reader = { kind = "serial", device = "$(sed -n 's/^id_reader=//p' devices.txt)" }
gate = { kind = "simulated", pulse = "800ms" }

[api]
socket = "$work/api.sock"
group = ""

[[api.supervisor]]
name = "wang"
password = "$(printf 'rain-at-gate-7\n' | "$bin/checkpointctl" passwd)"
TOML

# render START: the round that starts at START (Unix seconds), into gate.avi.
# Person k (from 0) raises the phone 1 + 3k seconds into it. 15 frames a
# second, so that a round renders in less time than it plays.
render() {
  local t0=$1 d="round-$1"
  mkdir -p "$d"
  present() { "$bin/holder" present --credential "people/$1/credential.cbor" --key "people/$1/holder.key" "${@:2}"; }
  shown() { at $((t0 + 1 + 3 * $1)); }
  present 1 --at "$(shown 0)" >"$d/01"
  present 2 --at "$(shown 1)" >"$d/02"
  present 3 --at "$(shown 2)" >"$d/03"
  present 4 --at "$(shown 3)" >"$d/04"
  present 5 --at "$(shown 4)" >"$d/05"
  "$bin/holder" present --credential people/forged/credential.cbor --key people/forged/holder.key --at "$(shown 5)" >"$d/06"
  "$bin/holder" present --credential people/6/credential.cbor >"$d/07"
  present 1 --at "$(at $((t0 + 1 + 3 * 7 - 120)))" >"$d/08" # a screenshot taken 2 minutes before
  present 7 --at "$(shown 8)" >"$d/09"
  present 8 --at "$(shown 9)" >"$d/10"
  present 9 --at "$(shown 10)" >"$d/11"
  "$bin/gatevideo" -out "$d.avi" -fps 15 -tail 8s "$d"/* >/dev/null
  mv "$d.avi" gate.avi
  rm -rf "$d"
}
length=41 # seconds a round plays: 1 + 11 people x 3 s + 8 s - 1 s (gatevideo's gap before the tail)

echo "== Rendering the first round (about 20 s)"
start=$(($(date +%s) + 25))
render "$start"
while [ "$(date +%s)" -lt "$start" ]; do sleep 0.1; done

"$bin/checkpointd" --config checkpoint.toml --json >>decisions.jsonl 2>>checkpointd.log &
daemon_pid=$!
pids+=("$daemon_pid")
echo "== checkpointd plays the gate round after round; open the guard's screen in your browser:"
echo "   http://127.0.0.1:$screen_port/          (the guard's)"
echo "   http://127.0.0.1:$screen_port/lane/lane-1   (the passengers')"
echo "   A supervisor (account wang, password rain-at-gate-7) reads its log meanwhile, from another terminal:"
echo "     export CHECKPOINT_USER=wang CHECKPOINT_PASSWORD=rain-at-gate-7"
echo "     $bin/checkpointctl status --socket $work/api.sock --save-device-pub /tmp/demo-live-device.pub"
echo "     $bin/checkpointctl logs --socket $work/api.sock --from today"
echo "     $bin/checkpointctl stats --socket $work/api.sock --from today --step hour"
echo "     $bin/checkpointctl export --socket $work/api.sock --from today --out /tmp/demo-live.csv"
echo "     $bin/checkpointctl verify-export --device-pub /tmp/demo-live-device.pub /tmp/demo-live.csv"
echo "     $bin/checkpointctl verify-log --socket $work/api.sock"
echo "   Ctrl-C stops it. Files, decisions.jsonl and the logs: $work"

# Each time the video opens again a round starts: the thermometer's script
# starts again, and the round after this one is rendered.
rounds=0
decided=0
while kill -0 "$daemon_pid" 2>/dev/null; do
  opens=$(grep -c 'msg="video source open"' checkpointd.log || true)
  if [ "$opens" -gt "$rounds" ]; then
    rounds=$opens
    kill -HUP "$sim_pid"
    if [ "$rounds" -gt 1 ]; then
      now=$(wc -l <decisions.jsonl)
      summary=$(tail -n "+$((decided + 1))" decisions.jsonl | grep -o '"decision":"[a-z]*"' | cut -d'"' -f4 | sort | uniq -c |
        awk '{s = s (NR > 1 ? ", " : "") $1 " " $2} END {print s}')
      echo "   round $((rounds - 1)): $((now - decided)) passages ($summary)"
      decided=$now
    fi
    opened=$(grep 'msg="video source open"' checkpointd.log | tail -n 1 | sed -n 's/^time=\([^ ]*\).*/\1/p')
    render $(($(date -u -d "$opened" +%s) + length)) &
    pids+=($!)
  fi
  sleep 0.2
done
if wait "$daemon_pid"; then
  echo "stopped; the files are in $work"
  exit 0
fi
echo "checkpointd failed: see $work/checkpointd.log"
exit 1
