-- herald's store. Timestamps are RFC 3339 UTC text with a fixed width
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so that they sort as text in any SQL engine.

CREATE TABLE sources (
    name                 TEXT PRIMARY KEY,
    kind                 TEXT NOT NULL,
    etag                 TEXT,
    last_modified        TEXT,
    last_fetch           TEXT,
    last_success         TEXT,
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    articles             INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE articles (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    guid         TEXT NOT NULL,
    url          TEXT NOT NULL,
    title        TEXT NOT NULL,
    author       TEXT,
    published    TEXT NOT NULL,
    updated      TEXT,
    summary      TEXT,
    content_html TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '[]',
    content_hash TEXT NOT NULL,
    first_seen   TEXT NOT NULL,
    UNIQUE (source, guid)
);
CREATE INDEX articles_by_published ON articles (published, url);

CREATE TABLE subscribers (
    id      INTEGER PRIMARY KEY,
    email   TEXT NOT NULL UNIQUE,
    name    TEXT,
    created TEXT NOT NULL
);

CREATE TABLE memberships (
    list       TEXT NOT NULL,
    subscriber INTEGER NOT NULL REFERENCES subscribers (id),
    status     TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
    changed_at TEXT NOT NULL,
    origin     TEXT NOT NULL CHECK (origin IN ('csv', 'web', 'cli')),
    PRIMARY KEY (list, subscriber)
);

CREATE TABLE suppressions (
    email  TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at     TEXT NOT NULL
);

CREATE TABLE editions (
    id            INTEGER PRIMARY KEY,
    list          TEXT NOT NULL,
    edition_date  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    html          TEXT NOT NULL,
    text          TEXT NOT NULL,
    article_ids   TEXT NOT NULL,
    -- the highest article id this list had seen when the edition was composed
    article_cursor INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'sending' CHECK (state IN ('sending', 'done')),
    composed_at   TEXT NOT NULL,
    UNIQUE (list, edition_date)
);

CREATE TABLE deliveries (
    edition         INTEGER NOT NULL REFERENCES editions (id),
    subscriber      INTEGER NOT NULL REFERENCES subscribers (id),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    message_id      TEXT NOT NULL,
    reply           TEXT,
    sent_at         TEXT,
    PRIMARY KEY (edition, subscriber)
);
CREATE INDEX deliveries_by_state ON deliveries (edition, state, subscriber);

CREATE TABLE stage_runs (
    stage       TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    summary     TEXT NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
