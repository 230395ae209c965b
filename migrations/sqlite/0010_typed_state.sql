-- What was kept as untyped strings in `settings` gets tables of its own:
-- each relay's messages per UTC day (old days are pruned as new ones are
-- written), the last fire time each daemon job handled, the lists whose
-- sending is paused, and the feed URLs a WebSub hub has not been told of.
-- The values already in `settings` move over.

CREATE TABLE relay_days (
    relay TEXT NOT NULL,
    day   TEXT NOT NULL,          -- YYYY-MM-DD, UTC
    sent  INTEGER NOT NULL,
    PRIMARY KEY (relay, day)
);
INSERT INTO relay_days (relay, day, sent)
    SELECT substr(key, 12, length(key) - 22), substr(key, length(key) - 9), CAST(value AS INTEGER)
    FROM settings WHERE key LIKE 'relay-sent:%:____-__-__';

CREATE TABLE daemon_jobs (
    job          TEXT PRIMARY KEY,
    handled_upto TEXT NOT NULL   -- the last fire time a run of the job completed
);
INSERT INTO daemon_jobs (job, handled_upto)
    SELECT substr(key, 13), value FROM settings WHERE key LIKE 'daemon-done:%';

CREATE TABLE paused_lists (
    list      TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL
);
INSERT INTO paused_lists (list, paused_at)
    SELECT substr(key, 8), value FROM settings WHERE key LIKE 'paused:%';

CREATE TABLE websub_pending (
    feed_url TEXT PRIMARY KEY
);
WITH RECURSIVE split (url, rest) AS (
    SELECT '', (SELECT value FROM settings WHERE key = 'websub:pending') || char(10)
    UNION ALL
    SELECT substr(rest, 1, instr(rest, char(10)) - 1), substr(rest, instr(rest, char(10)) + 1)
    FROM split WHERE rest <> ''
)
INSERT OR IGNORE INTO websub_pending (feed_url) SELECT url FROM split WHERE url <> '';

DELETE FROM settings
WHERE key LIKE 'relay-sent:%' OR key LIKE 'daemon-done:%' OR key LIKE 'paused:%'
   OR key = 'websub:pending';
