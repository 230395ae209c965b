-- A reader's own time zone (an IANA name such as "Australia/Sydney"; NULL:
-- the list's). Lists with `local_time = true` send each reader their
-- edition at the list's hour on the reader's clock: until then the reader's
-- delivery row waits (state 'waiting', due at next_attempt_at) and is no
-- work for a claim. SQLite cannot change a CHECK constraint in place, so
-- the ledger is copied into a table that allows the new state.
ALTER TABLE subscribers ADD COLUMN timezone TEXT;

CREATE TABLE deliveries_new (
    edition         INTEGER NOT NULL REFERENCES editions (id),
    subscriber      INTEGER NOT NULL REFERENCES subscribers (id),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('waiting', 'pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    message_id      TEXT NOT NULL,
    reply           TEXT,
    sent_at         TEXT,
    claimed_by      TEXT,
    claim_until     TEXT,
    PRIMARY KEY (edition, subscriber)
);
INSERT INTO deliveries_new (edition, subscriber, state, attempts, next_attempt_at, last_error,
                            message_id, reply, sent_at, claimed_by, claim_until)
    SELECT edition, subscriber, state, attempts, next_attempt_at, last_error,
           message_id, reply, sent_at, claimed_by, claim_until
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_by_state ON deliveries (edition, state, subscriber);
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE state = 'sending';
CREATE INDEX deliveries_pending ON deliveries (edition, subscriber) WHERE state = 'pending';
CREATE INDEX deliveries_expiry ON deliveries (edition, claim_until) WHERE state = 'sending';
CREATE INDEX deliveries_waiting ON deliveries (edition, next_attempt_at) WHERE state = 'waiting';
