-- Several herald processes sharing one store: who is here, which process
-- holds a delivery row and until when, and a relay's sends per time slot.

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,   -- random, one per process
    host         TEXT NOT NULL,
    boot         TEXT NOT NULL,      -- the host's boot id: a pid means something only within one boot
    pid          INTEGER NOT NULL,
    role         TEXT NOT NULL,      -- daemon | run | deliver
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claim_until TEXT;
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE state = 'sending';

CREATE TABLE relay_slots (
    relay TEXT NOT NULL,
    slot  INTEGER NOT NULL,          -- Unix seconds / the slot's length
    used  INTEGER NOT NULL,
    PRIMARY KEY (relay, slot)
);
