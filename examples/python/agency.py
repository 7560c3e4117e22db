"""An agency system's round trip with liaison in Python: post a CloudEvent over HTTPS
(requests), check its inclusion proof against the signed checkpoint's root, and consume
the agency's own queue over AMQP (pika).

Environment:
  LIAISON_URL       the gateway, e.g. https://localhost:8443
  LIAISON_CA        the county CA certificate (PEM)
  LIAISON_CERT      this agency's client certificate (PEM)
  LIAISON_KEY       its private key (PEM)
  LIAISON_EVENT     a CloudEvent file to post (structured JSON mode, a fresh `id`)
  LIAISON_AMQP_URL  the agency's RabbitMQ login, amqp://USER:PASSWORD@HOST:5672/VHOST
                    (the virtual host percent-encoded), as handed over by the operator
  LIAISON_AGENCY    the agency's code: its queue is liaison.agency.<code>
  LIAISON_EXPECT    how many deliveries to consume before stopping (default 1)

Prints one line per step; exits non-zero at the first step that fails.
"""

import base64
import hashlib
import json
import os
import sys
import time

import pika
import requests


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"set {name}")
    return value


BASE = env("LIAISON_URL").rstrip("/")
HTTP = requests.Session()
CLOUDEVENT = {"content-type": "application/cloudevents+json"}


def call(method, path, **kwargs):
    """One request with the agency's certificate, trusting the county CA only. `verify` is
    given on every request: set on the session, requests lets REQUESTS_CA_BUNDLE override it."""
    return HTTP.request(method, BASE + path, verify=env("LIAISON_CA"),
                        cert=(env("LIAISON_CERT"), env("LIAISON_KEY")), timeout=30, **kwargs)


def check(response, *expected):
    if response.status_code not in expected:
        # Every refusal is an RFC 9457 problem document with a stable `code`.
        sys.exit(f"FAILED: {response.request.method} {response.url} answered "
                 f"{response.status_code}: {response.text}")
    return response


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf_index, tree_size, leaf_hash, audit_path, root):
    """RFC 9162 section 2.1.3.2: is the leaf at leaf_index in the tree of tree_size?"""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in audit_path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main():
    with open(env("LIAISON_EVENT"), "rb") as f:
        event = f.read()

    agencies = check(call("GET", "/v1/agencies"), 200).json()["agencies"]
    print(f"agencies: {len(agencies)}")

    # Who would receive it; nothing is recorded.
    preview = check(call("POST", "/v1/routes/preview", data=event, headers=CLOUDEVENT), 200).json()
    print("preview: " + ",".join(r["agency"] for r in preview["recipients"]))

    # 202: recorded in the ledger and going to be delivered. Posting the same bytes again
    # (after a timeout, say) gets the same answer with "duplicate": true.
    accepted = check(call("POST", "/v1/messages", data=event, headers=CLOUDEVENT), 202).json()
    message_id = accepted["id"]
    print(f"accepted: {message_id} seq {accepted['seq']}")

    # The inclusion proof, once a signed checkpoint covers the message's entries.
    for _ in range(60):
        proof = check(call("GET", f"/v1/messages/{message_id}/proof"), 200, 503).json()
        if proof.get("entries") and not proof.get("pending"):
            break
        time.sleep(0.5)
    else:
        sys.exit(f"FAILED: no checkpoint covers {message_id}")
    checkpoint = proof["checkpoint"]
    root = bytes.fromhex(checkpoint["root_hash"])
    # The root is the one the signed note states (line 3, base64). Verify the note's
    # Ed25519 signature with the ledger key from the operator (see docs/audit.md).
    if base64.b64decode(checkpoint["note"].split("\n")[2]) != root:
        sys.exit("FAILED: the checkpoint's note states another root")
    entry = proof["entries"][0]
    if not verify_inclusion(entry["leaf_index"], entry["tree_size"],
                            bytes.fromhex(entry["leaf_hash"]),
                            [bytes.fromhex(h) for h in entry["audit_path"]], root):
        sys.exit("FAILED: the inclusion proof does not lead to the root")
    print(f"proof: leaf {entry['leaf_index']} verified in the checkpoint of size {checkpoint['tree_size']}")

    consume(int(os.environ.get("LIAISON_EXPECT", "1")))


def consume(expected):
    """Deliveries from the agency's own queue. Ack each only once it is safely stored:
    delivery is at least once, so drop a message id already seen."""
    queue = f"liaison.agency.{env('LIAISON_AGENCY')}"
    connection = pika.BlockingConnection(pika.URLParameters(env("LIAISON_AMQP_URL")))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=10)
    seen = set()
    consumed = 0
    deadline = time.monotonic() + 30
    for method, properties, body in channel.consume(queue, inactivity_timeout=1):
        if method is None:
            if time.monotonic() > deadline:
                sys.exit(f"FAILED: {consumed} of {expected} deliveries in 30 s")
            continue
        headers = properties.headers or {}
        if properties.type == "liaison.problem":
            # A refusal of something this agency published to liaison.intake.
            problem = json.loads(body)
            print(f"problem: {problem['code']} for {problem.get('message_id')}")
        elif properties.message_id in seen:
            print(f"duplicate: {properties.message_id}")
        else:
            seen.add(properties.message_id)
            event = json.loads(body)
            consumed += 1
            print(f"consumed: {properties.message_id} {properties.type} seq {headers.get('liaison-seq')}"
                  f" case {headers.get('caseref')} from {event['source']}")
        channel.basic_ack(method.delivery_tag)
        if consumed >= expected:
            break
    channel.cancel()
    connection.close()


if __name__ == "__main__":
    main()
