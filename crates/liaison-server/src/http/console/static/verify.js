// Verifies an inclusion proof in the browser, trusting nothing the server rendered but the
// proof data itself: the entry's bytes, its audit path and the signed checkpoint note.
// RFC 9162: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right); the
// checkpoint is a C2SP signed note whose Ed25519 signature covers its text up to the
// blank line. The public key is the ledger's, as published in its verifier key (vkey).
(function () {
  "use strict";
  const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
  const unhex = (text) => new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
  const unbase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const node = (left, right) => sha256(concat(Uint8Array.of(1), left, right));
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // RFC 9162 section 2.1.3.2, with BigInt so that any tree size is exact.
  async function rootFromPath(leaf, index, size, path) {
    let f = BigInt(index), s = BigInt(size) - 1n, r = leaf;
    if (f > s) throw new Error("leaf index beyond the tree");
    for (const p of path) {
      if (s === 0n) throw new Error("audit path too long");
      if ((f & 1n) === 1n || f === s) {
        r = await node(p, r);
        while ((f & 1n) === 0n && f !== 0n) { f >>= 1n; s >>= 1n; }
      } else {
        r = await node(r, p);
      }
      f >>= 1n; s >>= 1n;
    }
    if (s !== 0n) throw new Error("audit path too short");
    return r;
  }

  async function verify(data, log) {
    const entry = unbase64(data.entry);
    const leaf = await sha256(concat(Uint8Array.of(0), entry));
    log("leaf hash  " + hex(leaf));
    if (hex(leaf) !== data.leaf_hash) throw new Error("the leaf hash is not SHA-256(0x00 || entry)");
    const parsed = JSON.parse(new TextDecoder().decode(entry));
    if (parsed.seq !== data.seq) throw new Error("the entry is seq " + parsed.seq + ", not " + data.seq);
    const root = await rootFromPath(leaf, data.leaf_index, data.tree_size, data.audit_path.map(unhex));
    log("root       " + hex(root));
    // The checkpoint note: text, a blank line, signature lines.
    const cut = data.note.indexOf("\n\n");
    if (cut < 0) throw new Error("the checkpoint has no signature");
    const body = data.note.slice(0, cut + 1);
    const lines = body.split("\n");
    if (lines[0] !== data.origin) throw new Error("checkpoint origin " + lines[0]);
    if (lines[1] !== String(data.tree_size)) throw new Error("checkpoint size " + lines[1]);
    if (!equal(unbase64(lines[2]), root)) throw new Error("the path does not lead to the checkpoint's root");
    log("checkpoint " + lines[1] + " root matches");
    const key = await crypto.subtle.importKey("raw", unbase64(data.public_key), { name: "Ed25519" }, false, ["verify"]);
    const keyId = hex(await sha256(concat(new TextEncoder().encode(data.origin + "\n"), Uint8Array.of(1), unbase64(data.public_key)))).slice(0, 8);
    const signatures = data.note.slice(cut + 2).split("\n").filter((l) => l.startsWith("\u2014 " + data.origin + " "));
    for (const line of signatures) {
      const blob = unbase64(line.slice(line.lastIndexOf(" ") + 1));
      if (hex(blob.slice(0, 4)) !== keyId) continue;
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, blob.slice(4), new TextEncoder().encode(body));
      if (!ok) throw new Error("the checkpoint signature does not verify");
      log("signature  Ed25519 key " + keyId + " verifies");
      return;
    }
    throw new Error("no signature by the ledger's key");
  }

  const button = document.getElementById("verify");
  const result = document.getElementById("verify-result");
  const out = document.getElementById("verify-log");
  if (!button) return;
  button.addEventListener("click", async () => {
    out.textContent = "";
    const log = (line) => { out.textContent += line + "\n"; };
    try {
      await verify(JSON.parse(document.getElementById("proof-data").textContent), log);
      result.textContent = "\u2713 " + result.dataset.ok;
      result.className = "ok";
      result.dataset.verified = "true";
    } catch (e) {
      result.textContent = "\u2717 " + result.dataset.bad + ": " + e.message;
      result.className = "bad";
      result.dataset.verified = "false";
    }
  });
})();
