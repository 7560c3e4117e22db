#!/usr/bin/env bash
# An agency system's round trip with liaison over HTTPS, with curl and the shell alone:
# the registry, a route preview, posting a CloudEvent, its inclusion proof checked against
# the signed checkpoint's root, pulling the inbox and acknowledging.
#
# Environment:
#   LIAISON_URL    the gateway, e.g. https://localhost:8443
#   LIAISON_CA     the county CA certificate (PEM)
#   LIAISON_CERT   this agency's client certificate (PEM)
#   LIAISON_KEY    its private key (PEM)
#   LIAISON_EVENT  a CloudEvent file to post (structured JSON mode, a fresh `id`)
#
# Prints one line per step; exits non-zero at the first step that fails. Needs curl,
# sha256sum and base64 (coreutils); JSON is read with sed and grep, so that nothing else
# is needed.
set -euo pipefail

: "${LIAISON_URL:?}" "${LIAISON_CA:?}" "${LIAISON_CERT:?}" "${LIAISON_KEY:?}" "${LIAISON_EVENT:?}"

# One request with the agency's certificate; the body goes to $ANSWER, the status is printed.
ANSWER=$(mktemp)
trap 'rm -f "$ANSWER"' EXIT
call() {
    curl --silent --show-error --cacert "$LIAISON_CA" --cert "$LIAISON_CERT" --key "$LIAISON_KEY" \
        --output "$ANSWER" --write-out '%{http_code}' "$@"
}
fail() {
    echo "FAILED: $1" >&2
    cat "$ANSWER" >&2
    echo >&2
    exit 1
}
# The first value of a JSON member in the answer (strings without quotes, numbers as they are).
member() {
    grep -o "\"$1\":[^,}]*" "$ANSWER" | head -n 1 | sed -e "s/^\"$1\"://" -e 's/^"//' -e 's/"$//'
}

# 1. Who is registered (GET /v1/agencies).
[ "$(call "$LIAISON_URL/v1/agencies")" = 200 ] || fail "GET /v1/agencies"
echo "agencies: $(grep -o '"code":"[^"]*"' "$ANSWER" | wc -l)"

# 2. Who would receive the message, with nothing recorded (POST /v1/routes/preview).
status=$(call -H 'content-type: application/cloudevents+json' --data-binary "@$LIAISON_EVENT" \
    "$LIAISON_URL/v1/routes/preview")
[ "$status" = 200 ] || fail "POST /v1/routes/preview answered $status"
echo "preview: $(grep -o '"agency":"[^"]*"' "$ANSWER" | sed 's/"agency":"\(.*\)"/\1/' | paste -sd, -)"

# 3. Post it (POST /v1/messages): 202 means recorded in the ledger, going to be delivered.
status=$(call -H 'content-type: application/cloudevents+json' --data-binary "@$LIAISON_EVENT" \
    "$LIAISON_URL/v1/messages")
[ "$status" = 202 ] || fail "POST /v1/messages answered $status"
id=$(member id)
echo "accepted: $id seq $(member seq)"

# 4. Its inclusion proof (GET /v1/messages/{id}/proof), once a checkpoint covers it.
for _ in $(seq 1 60); do
    status=$(call "$LIAISON_URL/v1/messages/$id/proof")
    if [ "$status" = 200 ] && grep -q '"leaf_hash"' "$ANSWER" && grep -q '"pending":\[\]' "$ANSWER"; then
        break
    fi
    sleep 0.5
done
grep -q '"leaf_hash"' "$ANSWER" || fail "no inclusion proof for $id"

# RFC 9162 §2.1.3.2: hash the leaf up the audit path and compare with the checkpoint's root.
# SHA-256 over hex strings: printf turns \xHH escapes into bytes.
hash_node() { printf "$(printf '01%s%s' "$1" "$2" | sed 's/../\\x&/g')" | sha256sum | cut -c1-64; }
leaf=$(member leaf_hash)
index=$(member leaf_index)
size=$(member tree_size)
root=$(member root_hash)
path=$(grep -o '"audit_path":\[[^]]*\]' "$ANSWER" | head -n 1 | grep -o '[0-9a-f]\{64\}' || true)
fn=$index
sn=$((size - 1))
r=$leaf
for p in $path; do
    [ "$sn" -gt 0 ] || fail "audit path too long"
    if [ $((fn & 1)) = 1 ] || [ "$fn" = "$sn" ]; then
        r=$(hash_node "$p" "$r")
        if [ $((fn & 1)) = 0 ]; then
            while [ $((fn & 1)) = 0 ] && [ "$fn" != 0 ]; do
                fn=$((fn >> 1))
                sn=$((sn >> 1))
            done
        fi
    else
        r=$(hash_node "$r" "$p")
    fi
    fn=$((fn >> 1))
    sn=$((sn >> 1))
done
[ "$sn" = 0 ] && [ "$r" = "$root" ] || fail "the inclusion proof does not lead to the root"
# The root is the one the signed note states (its third line, base64).
note_root=$(member note | sed 's/\\n/\n/g' | sed -n 3p | base64 -d | od -An -tx1 | tr -d ' \n')
[ "$note_root" = "$root" ] || fail "the checkpoint's note states another root"
echo "proof: leaf $index verified in the checkpoint of size $size"

# 5. Pull the inbox (GET /v1/inbox, long poll up to 10 s) and acknowledge each delivery.
[ "$(call "$LIAISON_URL/v1/inbox?wait=10&max=10")" = 200 ] || fail "GET /v1/inbox"
deliveries=$(grep -o '"delivery":[0-9]*' "$ANSWER" | sed 's/"delivery"://')
[ -n "$deliveries" ] || fail "the inbox is empty"
types=$(grep -o '"type":"[^"]*"' "$ANSWER" | sed 's/"type":"\(.*\)"/\1/' | sort -u | paste -sd, -)
echo "pulled: $(echo "$deliveries" | wc -w) ($types)"
for delivery in $deliveries; do
    status=$(call -X POST "$LIAISON_URL/v1/inbox/$delivery/ack")
    [ "$status" = 204 ] || fail "ack of $delivery answered $status"
    echo "acknowledged: $delivery"
done
# An ack repeated (its first answer lost) is told that the first one stands.
delivery=$(echo "$deliveries" | head -n 1)
status=$(call -X POST "$LIAISON_URL/v1/inbox/$delivery/ack")
[ "$status" = 200 ] && grep -q '"already_acknowledged":true' "$ANSWER" || fail "repeated ack answered $status"
echo "acknowledged again: $delivery already_acknowledged"
