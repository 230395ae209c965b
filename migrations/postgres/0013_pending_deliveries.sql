-- What a claim reads, each in an index of its own: the rows of an edition
-- still to be sent, in subscriber order, and the rows whose claim may have
-- expired, by expiry. On PostgreSQL the first was otherwise read from the
-- primary key (edition, subscriber) whenever the statistics said that most
-- rows were pending, as they are right after an edition is composed, and
-- every claim then walked over every row already sent; the second walked
-- over every row once claimed (`deliveries_by_state`), as PostgreSQL keeps
-- the entries of rows that moved on until a vacuum.
CREATE INDEX deliveries_pending ON deliveries (edition, subscriber) WHERE state = 'pending';
CREATE INDEX deliveries_expiry ON deliveries (edition, claim_until) WHERE state = 'sending';
