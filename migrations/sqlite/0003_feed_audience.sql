-- Feed readers, as herald's web server sees them poll the feeds.
-- Aggregators announce how many of their users subscribe in their
-- User-Agent ("Feedly/1.0 (…; 462 subscribers)"): the latest count each.
CREATE TABLE feed_aggregators (
    name        TEXT PRIMARY KEY,
    subscribers INTEGER NOT NULL,
    seen_at     TEXT NOT NULL
);

-- Other pollers, counted once a day each (a hash of address and agent).
CREATE TABLE feed_pollers (
    day    TEXT NOT NULL,
    poller TEXT NOT NULL,
    PRIMARY KEY (day, poller)
);
