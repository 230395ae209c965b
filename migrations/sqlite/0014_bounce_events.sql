-- What came back after the handoff: every bounce, complaint, delay notice
-- and auto-reply herald was told of (by its SMTP listener, a bounce mailbox,
-- a provider's webhook or the SMTP conversation itself), what it was about,
-- and what herald did about it. `reference` names the report (a provider's
-- event id, a report's Message-ID and recipient), so a report that comes in
-- twice is acted on once.
CREATE TABLE bounce_events (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    via        TEXT NOT NULL,
    kind       TEXT NOT NULL,
    email      TEXT,
    subscriber INTEGER,
    edition    INTEGER,
    list       TEXT,
    status     TEXT,
    diagnostic TEXT,
    action     TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    reference  TEXT UNIQUE
);
CREATE INDEX bounce_events_subscriber ON bounce_events (subscriber, kind, at);
CREATE INDEX bounce_events_at ON bounce_events (at);
