#!/usr/bin/env bash
# The demo: an authority serving on loopback, a handful of people with phones
# (and one without) who register their phones with a proof of who they are
# and declare, getting the colour the authority's rules give from their
# declarations and the health department's risk feeds; a checkpoint
# installed and synced, then cut off: it decides on a rendered video of the
# people at its gate, offline, recording every decision; meanwhile the
# health department names one of them a close contact, which revokes her
# code; when the link returns the checkpoint catches up, its events reach
# the authority, the revocation reaches the checkpoint, and the revoked
# code is refused; once her quarantine is over (20 s in the demo's rules)
# a clean declaration gives her a green code that passes.
# Usage: scripts/demo.sh BIN_DIR WORK_DIR
set -euo pipefail

bin=${1:?bin dir}
work=${2:?work dir}
rm -rf "$work"
mkdir -p "$work"
cd "$work"

authority() { "$bin/authority" "$@" >/dev/null; }
holder() { "$bin/holder" "$@"; }
ago() { date -u -d "-$1" +%Y-%m-%dT%H:%M:%SZ; }
in_() { date -u -d "+$1" +%Y-%m-%dT%H:%M:%SZ; }

server_pid=""
start_authority() {
  : >authority.out # not the last server's address
  "$bin/authority" serve --keys authority --db authority.db --trust trust.cbor --issuer-code GD --region 44 \
    --rules rules.json --feed-key health/feed.pub --realname-key realname/realname.pub \
    --listen "${listen:-127.0.0.1:0}" >authority.out 2>>authority.log &
  server_pid=$!
  for _ in $(seq 100); do
    url=$(sed -n 's/^authority serving on //p' authority.out)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "the authority did not start"; cat authority.log; exit 1; }
  listen=${url#http://}
}
stop_authority() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
sim_pid=""
shots_pid=""
stop_all() {
  stop_authority
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  [ -n "$shots_pid" ] && kill "$shots_pid" 2>/dev/null || true
  [ -n "$box_pid" ] && kill "$box_pid" 2>/dev/null || true
}
box_pid=""
trap stop_all EXIT

echo "== The authority: keys, a trust list for Guangdong (region 44) naming its list key, and its server;"
echo "   the health department's feed key and a real-name service's key, which the authority takes"
authority keygen --out authority
authority trust --root authority/root.key --issuer authority/issuer.pub --region 44 \
  --issuer-code GD --issuer-name "Guangdong Health Code Authority" --out trust.cbor
authority keygen --out forger
authority keygen --kind feed --out health
authority keygen --kind realname --out realname
# The demo's rules: the built-in ones (configs/rules.json), with every
# quarantine 20 s instead of days, so that one ends while the demo runs.
cat >rules.json <<JSON
{"case": {"quarantine": "20s"}, "close_contact": {"quarantine": "20s"}, "risk_area_travel": {"quarantine": "20s"},
 "declared_fever": {"quarantine": "20s"}, "declared_symptoms": {"quarantine": "20s"}, "declared_contact": {"quarantine": "20s"}}
JSON
start_authority
echo "   serving on $url; its rules: configs/rules.json with every quarantine 20 s (the demo's rules.json)"

# name, ID number (GB 11643, with its check character), how the phone is
# registered (code: from the community office; realname: through the
# real-name service), what the person declares
people=(
  "王芳|44030519880506122X|code|"
  "李四|440304197702153315|code|--fever --travel 440111:$(TZ=Asia/Shanghai date +%F)"
  "赵六|440106199512300418|code|"
  "钱七|440303200101014422|code|"
  "孙八|440307198203036636|-|"
  "吴十|440305194806151210|-|"
  "郑一|440304198107200011|code|"
  "冯二|440306199203110021|realname|"
  "陈三|440303197511230035|code|"
)

echo "== The people register their phones, each with a proof of who they are: a one-time code from the"
echo "   community office, whose operator checked their ID card, or (冯二) a real-name service's signed word"
echo "   that his face matched his ID number and that he holds his phone's key"
i=0
for p in "${people[@]}"; do
  IFS='|' read -r name num how _ <<<"$p"
  i=$((i + 1))
  mkdir -p "people/$i"
  holder keygen --out "people/$i" >/dev/null
  case $how in
  code)
    code=$("$bin/authority" registration-code --server "$url" --token authority/admin.token \
      --id-number "$num" --name "$name" --operator futian-community-office)
    printf '   %s, code %s: ' "$name" "$code"
    holder register --server "$url" --key "people/$i/holder.key" --id-number "$num" --name "$name" --code "$code"
    ;;
  realname)
    authority realname-assert --key realname/realname.key --id-number "$num" --name "$name" \
      --holder "people/$i/holder.pub" --out "people/$i/assertion.cbor"
    printf '   %s, real-name assertion: ' "$name"
    holder register --server "$url" --key "people/$i/holder.key" --id-number "$num" --name "$name" \
      --assertion "people/$i/assertion.cbor"
    ;;
  esac
done

echo "== The health department's feeds, signed with its feed key: Baiyun district (440111) a risk area"
echo "   since three days ago; 赵六 a case (the rules make him red at once)"
feed() { # kind version table
  "$bin/authority" feed --server "$url" --token authority/admin.token --key health/feed.key \
    --kind "$1" --version "$2" --csv "$3" | sed 's/^/   /'
}
printf 'region,from,to\n440111,%s,\n' "$(TZ=Asia/Shanghai date -d '-3 days' +%F)" >areas.csv
printf 'id_number,since\n440106199512300418,%s\n' "$(date -u +%FT%TZ)" >cases.csv
feed risk_areas 1 areas.csv
feed cases 1 cases.csv

echo "== Each declares on the phone (李四: a fever, and Baiyun district today); the authority's rules give"
echo "   the colour from the declaration and the feeds, and issue a credential to the phone's key"
i=0
for p in "${people[@]}"; do
  IFS='|' read -r name num how declared <<<"$p"
  i=$((i + 1))
  [ "$how" = - ] && continue
  printf '   %s: ' "$name"
  # shellcheck disable=SC2086
  holder declare --key "people/$i/holder.key" $declared --out "people/$i/credential.cbor"
done
echo "   李四 corrects his declaration at once (no fever after all):"
holder declare --key people/2/holder.key --travel "440111:$(TZ=Asia/Shanghai date +%F)" --out people/2/corrected.cbor 2>&1 |
  sed 's/^/   /' || true
echo "   李四 asks why he is yellow:"
holder status --key people/2/holder.key | sed 's/^/     /'

echo "== Two codes from the operator's offline tool: 孙八's, issued two days ago for 24 hours (he shows it"
echo "   still), and 吴十's paper code (he has no phone)"
authority issue --issuer authority/issuer.key --issuer-code GD --region 44 --holder people/5/holder.pub \
  --id-number 440307198203036636 --name 孙八 --colour green --at "$(ago '48 hours')" --out people/5/credential.cbor
authority issue --issuer authority/issuer.key --issuer-code GD --region 44 --static --valid 168h \
  --id-number 440305194806151210 --name 吴十 --colour green --out people/6/credential.cbor

echo "== 钱七's status changed after issue: the authority revokes her credentials"
"$bin/authority" revoke --server "$url" --token authority/admin.token --id-number 440303200101014422 | sed 's/^/   /'

echo "== A forger signs a credential with a key that is on no trust list"
mkdir -p people/forged
holder keygen --out people/forged >/dev/null
"$bin/authority" issue --issuer forger/issuer.key --issuer-code GD --region 44 --holder people/forged/holder.pub \
  --id-number 440305199909091233 --name 冒名者 --colour green --out people/forged/credential.cbor >/dev/null

echo "== The lane's devices: a thermometer and an ID-card reader on serial lines (simulated on"
echo "   pseudo-terminals: the thermometer answers each query with the next reading of a script), a gate relay"
echo "   (simulated: it logs what it does)"
# The readings, in the order the passages ask for them; the cards, at their
# cue: before a reading (the card goes down, then the forehead comes up), or
# once some passages are decided (a person without a phone).
cat >sim.json <<JSON
{"query": "M",
 "readings": ["36.5", "36.6", "36.4", "36.7", "36.3", "36.4", "36.5", "38.2", "38.1", "28.4", "36.7", "36.8", "36.6", "36.5", "36.4"],
 "card_before_reading": {"6": "440305194806151210,吴十", "12": "440305199909091233,冒用者"},
 "card_after_decisions": {"11": "周九,440305193904051112"}}
JSON
rm -f devices.txt
"$bin/gatesim" serve -script sim.json -paths devices.txt -decisions decisions.jsonl 2>>gatesim.log &
sim_pid=$!
for _ in $(seq 100); do [ -s devices.txt ] && break; sleep 0.1; done
thermometer_port=$(sed -n 's/^thermometer=//p' devices.txt)
reader_port=$(sed -n 's/^id_reader=//p' devices.txt)
echo "   thermometer on $thermometer_port, ID-card reader on $reader_port"

# The guard's screen: on port 8431, or the next one nothing listens on.
screen_port=8431
while (: </dev/tcp/127.0.0.1/$screen_port) 2>/dev/null; do screen_port=$((screen_port + 1)); done
screen_url="http://127.0.0.1:$screen_port"

echo "== Installing the checkpoint: an enrolment token, then a first sync"
token=$("$bin/authority" enroll-token --server "$url" --token authority/admin.token --name demo-gate)
cat >checkpoint.toml <<TOML
name = "demo-gate"
[trust]
root_key = "authority/root.pub"
[store]
path = "checkpoint.db"
[sync]
authority = "$url"
device_key = "device.key"
enroll_token = "$token"
interval = "2s"
[screen]
listen = "127.0.0.1:$screen_port"

[[lane]]
name = "lane-1"
camera = { device = "gate.avi", pace = 30 }
thermometer = { kind = "serial", port = "$thermometer_port", query = "M\\r\\n" }
id_reader = { kind = "serial", device = "$reader_port" }
gate = { kind = "simulated", pulse = "800ms" }
TOML
"$bin/checkpointd" --config checkpoint.toml --sync-once 2>>checkpointd.log | sed 's/^/   /'

echo "== The link goes down"
stop_authority

echo "== Each person's phone shows a fresh code; one more shows a screenshot taken 2 minutes ago"
# A phone signs its code for the moment it is shown. The video is rendered
# first and played after: person k (from 0) raises the phone 1 + 3k seconds
# into it, and rendering takes about 20 s, so each phone signs for then.
present() { holder present --credential "people/$1/credential.cbor" --key "people/$1/holder.key" "${@:2}"; }
shown() { in_ "$((20 + 1 + 3 * $1)) seconds"; }
mkdir -p codes
present 1 --at "$(shown 0)" >codes/1.txt
present 2 --at "$(shown 1)" >codes/2.txt
present 3 --at "$(shown 2)" >codes/3.txt
present 4 --at "$(shown 3)" >codes/4.txt
present 5 --at "$(shown 4)" >codes/5.txt
holder present --credential people/forged/credential.cbor --key people/forged/holder.key --at "$(shown 5)" >codes/6.txt
holder present --credential people/6/credential.cbor >codes/7.txt
present 1 --at "$(ago '2 minutes')" >codes/8.txt
present 7 --at "$(shown 8)" >codes/9.txt
present 8 --at "$(shown 9)" >codes/10.txt
present 9 --at "$(shown 10)" >codes/11.txt
who=(
  "王芳, green code on her phone"
  "李四, yellow code"
  "赵六, red code"
  "钱七, green code revoked after issue"
  "孙八, green code issued two days ago for 24 hours"
  "someone with a forged code"
  "吴十, 78, a paper code and his ID card"
  "a screenshot of 王芳's code taken 2 minutes ago"
  "郑一, green code, a fever, re-measured"
  "冯二, green code, the thermometer misreads, re-measured"
  "someone with 陈三's phone and his own ID card"
  "周九, 85, no phone, shows his ID card"
)

echo "== Rendering the gate camera's video of the eleven who show a code"
"$bin/gatevideo" -out gate.avi -tail 8s codes/1.txt codes/2.txt codes/3.txt codes/4.txt codes/5.txt codes/6.txt codes/7.txt \
  codes/8.txt codes/9.txt codes/10.txt codes/11.txt | sed 's/^/   /'

echo "== Offline, checkpointd watches the video as its camera, with its thermometer, card reader and gate"
echo "   while it plays, the guard's screen is at $screen_url/ and the passengers' at $screen_url/lane/lane-1"
# Headless Chromium photographs the guard's screen after each passage.
rm -f screenshots.ready
"$bin/screenshots" -url "$screen_url" -lane lane-1 -out screen -n "${#who[@]}" -ready screenshots.ready \
  >screenshots.log 2>&1 &
shots_pid=$!
for _ in $(seq 150); do [ -e screenshots.ready ] || ! kill -0 "$shots_pid" 2>/dev/null && break; sleep 0.1; done
"$bin/checkpointd" --config checkpoint.toml --json >decisions.jsonl 2>>checkpointd.log
wait "$shots_pid" || echo "   (no screenshots: see $work/screenshots.log)"
shots_pid=""
"$bin/gatesim" table decisions.jsonl "${who[@]}"
failed=$(grep -c 'sync failed' checkpointd.log || true)
echo "   (the link was down: $failed sync attempts failed, scanning went on; every passage is in checkpoint.db)"

echo "== Meanwhile the health department names 王芳 a close contact of a case: the rules make her yellow and"
echo "   revoke the green code on her phone"
start_authority
printf 'id_number,since\n44030519880506122X,%s\n' "$(date -u +%FT%TZ)" >contacts.csv
named=$(date +%s)
feed close_contacts 1 contacts.csv
echo "   what her phone says (holder status):"
holder status --key people/1/holder.key | sed 's/^/     /'

echo "== The link returns: the checkpoint catches up"
"$bin/checkpointd" --config checkpoint.toml --sync-once 2>>checkpointd.log | sed 's/^/   /'
echo "== What the authority holds now"
"$bin/authority" status --server "$url" --token authority/admin.token | sed 's/^/   /'

echo "== The authority, alone, can read the sealed ID number of the person without a phone (for contact tracing)"
stop_authority
"$bin/authority" unseal --keys authority --db authority.db | sed 's/^/   /'
start_authority

echo "== 王芳 comes back with a fresh code on her phone"
present 1 >codes/12.txt
"$bin/gatevideo" -out gate.avi codes/12.txt >/dev/null
"$bin/checkpointd" --config checkpoint.toml --json >decisions2.jsonl 2>>checkpointd.log
"$bin/gatesim" table decisions2.jsonl "王芳, after the revocation reached the checkpoint"

echo "== 王芳's quarantine ends 20 s after she was named; then she declares, with nothing to declare: green"
left=$((named + 21 - $(date +%s)))
[ "$left" -gt 0 ] && sleep "$left"
printf '   王芳: '
holder declare --key people/1/holder.key --out people/1/credential.cbor
present 1 >codes/13.txt
"$bin/gatevideo" -out gate.avi codes/13.txt >/dev/null
"$bin/checkpointd" --config checkpoint.toml --json >decisions3.jsonl 2>>checkpointd.log
"$bin/gatesim" table decisions3.jsonl "王芳, green again: her quarantine over, a clean declaration"

echo "== A supervisor comes to the box. checkpointd runs on (its camera watching an empty gate) and serves"
echo "   the supervisors' API on a socket; 王 (account wang) has a password in its configuration and a key"
echo "   pair for encrypted exports. Each command below is recorded in the box's log as an audit event."
"$bin/gatevideo" -out idle.avi -tail 2s >/dev/null
printf 'rain-at-gate-7\n' >wang.password
"$bin/checkpointctl" keygen --out wang >/dev/null
sed 's/device = "gate.avi", pace = 30 }/device = "idle.avi", pace = 30, loop = true }/' checkpoint.toml >checkpoint-live.toml
cat >>checkpoint-live.toml <<TOML

[api]
socket = "$work/api.sock"
group = ""

[[api.supervisor]]
name = "wang"
password = "$("$bin/checkpointctl" passwd <wang.password)"
TOML
rm -f api.sock
"$bin/checkpointd" --config checkpoint-live.toml --json >/dev/null 2>>checkpointd.log &
box_pid=$!
for _ in $(seq 100); do [ -S api.sock ] && break; sleep 0.1; done
export CHECKPOINT_USER=wang CHECKPOINT_PASSWORD=rain-at-gate-7
# A supervisor's command against the box's socket; check runs one that
# needs no box.
supervise() {
  local cmd=$1
  shift
  echo "   \$ checkpointctl $cmd --socket $work/api.sock $*"
  "$bin/checkpointctl" "$cmd" --socket api.sock "$@" 2>&1 | sed 's/^/     /' || true
}
check() {
  echo "   \$ checkpointctl $*"
  "$bin/checkpointctl" "$@" 2>&1 | sed 's/^/     /' || true
}
supervise status --save-device-pub device.pub
supervise logs --from today --limit 8
supervise logs --from today --outcome refuse
supervise stats --from today --step day
mkdir -p usb
supervise export --from today --out usb/demo-gate.csv
check verify-export --device-pub device.pub usb/demo-gate.csv
echo "   (someone turns a refusal into a pass on the stick:)"
cp usb/demo-gate.csv usb/altered.csv
cp usb/demo-gate.csv.manifest.json usb/altered.csv.manifest.json
sed -i '0,/refuse/s//pass/' usb/altered.csv
check verify-export --device-pub device.pub usb/altered.csv
supervise export --from today --format jsonl --out usb/demo-gate.jsonl --encrypt-to wang.pub
check verify-export --device-pub device.pub --key wang.key usb/demo-gate.jsonl
supervise verify-log
supervise logs --kind audit --limit 5
kill "$box_pid" 2>/dev/null || true
wait "$box_pid" 2>/dev/null || true
box_pid=""
unset CHECKPOINT_PASSWORD

echo
echo "Files are in $work: the videos, decisions.jsonl, checkpoint.db, authority.db and the logs."
echo "The guard's screen after each passage, and the passenger's on a pass and a refusal: $work/screen/"
echo "To watch passages arrive in your own browser: make demo-live (it says where to open the page);"
echo "its box serves the supervisors' API too, and prints the commands to try against it."
