-- A reader's own time zone (an IANA name such as "Australia/Sydney"; NULL:
-- the list's). Lists with `local_time = true` send each reader their
-- edition at the list's hour on the reader's clock: until then the reader's
-- delivery row waits (state 'waiting', due at next_attempt_at) and is no
-- work for a claim.
ALTER TABLE subscribers ADD COLUMN timezone TEXT;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('waiting', 'pending', 'sending', 'sent', 'failed', 'skipped'));
CREATE INDEX deliveries_waiting ON deliveries (edition, next_attempt_at) WHERE state = 'waiting';
