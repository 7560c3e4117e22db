-- Erasure of personal data (PIPL Art. 47). Message bodies are stored sealed: AES-256-GCM
-- under a data key of their own, written here wrapped by a key-encryption key (KEK) of the
-- configuration. Unlike `messages`, this table is not append-only: erasing a case nulls
-- its messages' wrapped keys (noting the seq of the `case.erased` entry that did it), and
-- rotating the KEK re-wraps them. A message with no row here was stored in clear (before
-- this migration, or by a broker without a KEK).
CREATE TABLE message_keys (
    message_id UUID PRIMARY KEY,
    -- The KEK that wraps `wrapped`; NULL once erased.
    kek_id TEXT,
    -- nonce ‖ AES-256-GCM(KEK, data key); NULL once erased.
    wrapped BYTEA,
    -- The seq of the `case.erased` entry that destroyed the key.
    erased_seq BIGINT,
    CHECK ((kek_id IS NULL) = (wrapped IS NULL)),
    CHECK ((wrapped IS NULL) <> (erased_seq IS NULL))
);

-- Rotation pages through the keys still wrapped by a retiring KEK.
CREATE INDEX message_keys_kek ON message_keys (kek_id, message_id) WHERE kek_id IS NOT NULL;
