# An independent verifier of docs/vectors, written from docs/audit.md alone (Python, with
# hashlib and the `cryptography` package): it re-encodes every entry by the documented rules,
# recomputes leaf hashes, roots and proofs, and checks the checkpoint signatures. Run by
# crates/liaison-core/tests/vectors.rs: `python3 independent_verifier.py docs/vectors`.
import json, hashlib, base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey, Ed25519PrivateKey

V = sys.argv[1]
load = lambda n: json.load(open(f"{V}/{n}", encoding="utf-8"))
H = lambda b: hashlib.sha256(b).digest()

def sort_objects(v):
    if isinstance(v, dict):
        return {k: sort_objects(v[k]) for k in sorted(v, key=lambda k: k.encode())}
    if isinstance(v, list):
        return [sort_objects(x) for x in v]
    return v

def enc_str(s):
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"': out.append('\\"')
        elif c == '\\': out.append('\\\\')
        elif o == 8: out.append('\\b')
        elif o == 9: out.append('\\t')
        elif o == 10: out.append('\\n')
        elif o == 12: out.append('\\f')
        elif o == 13: out.append('\\r')
        elif o < 0x20: out.append('\\u%04x' % o)
        else: out.append(c)
    out.append('"')
    return ''.join(out)

def enc(v):
    if v is None: return 'null'
    if v is True: return 'true'
    if v is False: return 'false'
    if isinstance(v, int): assert 0 <= v < 2**63; return str(v)
    if isinstance(v, str): return enc_str(v)
    if isinstance(v, list): return '[' + ','.join(enc(x) for x in v) + ']'
    if isinstance(v, dict): return '{' + ','.join(enc_str(k) + ':' + enc(x) for k, x in v.items()) + '}'
    raise TypeError(v)

def canonical(entry):
    order = ['seq','at','kind','message','caseref','agency','detail']
    assert set(entry) == set(order)
    top = {k: entry[k] for k in order}
    top['detail'] = sort_objects(entry['detail'])
    return enc(top).encode('utf-8')

entries = load('entries.json')['entries']
leaves = []
for i, v in enumerate(entries):
    b = canonical(v['entry'])
    assert b == v['canonical'].encode('utf-8'), (i, b, v['canonical'])
    lh = H(b'\x00' + b)
    assert lh.hex() == v['leaf_hash']
    if 'body' in v:
        assert H(v['body'].encode()).hex() == v['entry']['detail']['sha256']
    leaves.append(lh)

def mth(ls):
    n = len(ls)
    if n == 0: return H(b'')
    if n == 1: return ls[0]
    k = 1
    while k * 2 < n: k *= 2
    return H(b'\x01' + mth(ls[:k]) + mth(ls[k:]))

tree = load('tree.json')
for r in tree['roots']:
    assert mth(leaves[:r['tree_size']]).hex() == r['root'], r

# RFC 9162 2.1.3.2 inclusion verification
def verify_inclusion(leaf, index, size, path, root):
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = H(b'\x01' + p + r)
            if not fn & 1:
                while True:
                    fn >>= 1; sn >>= 1
                    if fn & 1 or fn == 0: break
        else:
            r = H(b'\x01' + r + p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root

def verify_consistency(m, n, r1, r2, proof):
    if m == n: return not proof and r1 == r2
    if m & (m - 1) == 0: proof = [r1] + proof
    fn, sn = m - 1, n - 1
    while fn & 1: fn >>= 1; sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            fr = H(b'\x01' + c + fr); sr = H(b'\x01' + c + sr)
            if not fn & 1:
                while True:
                    fn >>= 1; sn >>= 1
                    if fn & 1 or fn == 0: break
        else:
            sr = H(b'\x01' + sr + c)
        fn >>= 1; sn >>= 1
    return fr == r1 and sr == r2 and sn == 0

pr = load('proofs.json')
i = pr['inclusion']
assert verify_inclusion(bytes.fromhex(i['leaf_hash']), i['leaf_index'], i['tree_size'], [bytes.fromhex(x) for x in i['audit_path']], bytes.fromhex(i['root']))
c = pr['consistency']
assert verify_consistency(c['from'], c['to'], bytes.fromhex(c['from_root']), bytes.fromhex(c['to_root']), [bytes.fromhex(x) for x in c['proof']])

cp = load('checkpoint.json')
def parse_vkey(s):
    name, kid, key = s.strip().split('+', 2)
    raw = base64.b64decode(key)
    assert raw[0] == 1 and len(raw) == 33
    pub = raw[1:]
    assert H(name.encode() + b'\n' + b'\x01' + pub)[:4].hex() == kid
    return name, bytes.fromhex(kid), pub

def open_note(vkey, note, origin=True):
    name, kid, pub = parse_vkey(vkey)
    text_end = note.rstrip('\n').rfind('\n\n')
    text, sigs = note[:text_end + 1], note[text_end + 2:].rstrip('\n').split('\n')
    ok = False
    for line in sigs:
        assert line.startswith('\u2014 ')
        n, b = line[2:].split(' ', 1)
        blob = base64.b64decode(b)
        if n != name or blob[:4] != kid: continue  # unknown key: ignored
        Ed25519PublicKey.from_public_bytes(pub).verify(blob[4:], text.encode())
        ok = True
    assert ok
    lines = text.split('\n')[:-1]
    assert not origin or lines[0] == name
    return int(lines[1]), base64.b64decode(lines[2])

seed = bytes.fromhex(cp['seed'])
assert seed == H(b"liaison test vector ledger key")
pk = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
assert pk.hex() == cp['public_key']
for note in (cp['note'], cp['note_cosigned']):
    size, root = open_note(cp['vkey'], note)
    assert size == cp['tree_size'] and root.hex() == cp['root'] == tree['roots'][size]['root']
open_note(cp["cosigner_vkey"], cp["note_cosigned"], origin=False)
print("independent verifier: all vectors agree with docs/audit.md")
