#!/usr/bin/env bash
# The demo: an authority, a handful of people with phones (and one without),
# and a checkpoint deciding on each code offline, through the real commands.
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

echo "== Setting up: authority keys, a trust list for Guangdong (region 44), a forger's keys"
authority keygen --out authority
authority trust --root authority/root.key --issuer authority/issuer.pub --region 44 \
  --issuer-code GD --issuer-name "Guangdong Health Code Authority" --out trust.cbor
authority keygen --out forger

# name, ID number, colour, extra flags for authority issue
people=(
  "王芳|440305198805061224|green|"
  "李四|440304197702153318|yellow|"
  "赵六|440106199512300419|red|"
  "钱七|440303200101014425|green|"
  "孙八|440307198203036633|green|--at $(ago '48 hours')"
  "周九|440305193904051117|green|--static --valid 168h"
)
issue() { # id name idnum colour extra...
  local id=$1 name=$2 num=$3 colour=$4; shift 4
  local holderflag=(--holder "people/$id/holder.pub")
  [[ " $* " == *" --static "* ]] && holderflag=()
  authority issue --issuer authority/issuer.key --issuer-code GD "${holderflag[@]}" \
    --id-number "$num" --name "$name" --colour "$colour" --out "people/$id/credential.cbor" "$@"
}

echo "== Issuing credentials to the demo people"
i=0
for p in "${people[@]}"; do
  IFS='|' read -r name num colour extra <<<"$p"
  i=$((i + 1))
  mkdir -p "people/$i"
  holder keygen --out "people/$i" >/dev/null
  # shellcheck disable=SC2086
  issue "$i" "$name" "$num" "$colour" $extra
done

echo "== Revoking 钱七's credentials (the status changed after issue)"
authority revoke --root authority/root.key --id-number 440303200101014425 --list revocations.cbor

echo "== A forger signs a credential with a key that is on no trust list"
mkdir -p people/forged
holder keygen --out people/forged >/dev/null
"$bin/authority" issue --issuer forger/issuer.key --issuer-code GD --holder people/forged/holder.pub \
  --id-number 440305199909091234 --name 冒名者 --colour green --out people/forged/credential.cbor >/dev/null

summary=()
check() { # title, then checkpointctl verify flags
  local title=$1 out; shift
  echo
  echo "--- $title"
  out=$("$bin/checkpointctl" verify --trust trust.cbor --root authority/root.pub --revocations revocations.cbor "$@" || true)
  sed 's/^/    /' <<<"$out"
  local reasons
  reasons=$(sed -n 's/^  - \([a-z_]*\):.*/\1/p' <<<"$out" | paste -sd, -)
  summary+=("$(printf '%-7s %-26s %s' "$(head -n1 <<<"$out" | cut -d' ' -f1)" "${reasons:--}" "$title")")
}
present() { holder present --credential "people/$1/credential.cbor" --key "people/$1/holder.key" "${@:2}"; }

echo
echo "== At the gate: each person shows a code; the checkpoint decides offline"
present 1 --png people/1/code.png >/dev/null
check "王芳, green code on her phone (read from the picture of her screen)" --image people/1/code.png
check "李四, yellow code" --text "$(present 2)"
check "赵六, red code" --text "$(present 3)"
check "钱七, green code revoked after issue" --text "$(present 4)"
check "孙八, green code issued two days ago for 24 hours" --text "$(present 5)"
check "someone with a forged code" --text "$(holder present --credential people/forged/credential.cbor --key people/forged/holder.key)"
check "周九, 85, no phone: paper code, no ID card read" --text "$(holder present --credential people/6/credential.cbor)"
check "周九 again, ID card read by the reader" --text "$(holder present --credential people/6/credential.cbor)" \
  --id-number 440305193904051117
check "a screenshot of 王芳's code taken 2 minutes ago" --text "$(present 1 --at "$(ago '2 minutes')")"
echo
echo "== Summary: one decision per person"
printf '%-7s %-26s %s\n' DECISION REASONS WHO
printf '%s\n' "${summary[@]}"
echo
echo "Files are in $work."
