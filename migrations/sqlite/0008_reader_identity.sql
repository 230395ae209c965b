-- A subscriber's id is never given to anyone else, and every link herald
-- mails is bound to a key that is made with the subscriber and deleted with
-- them, so an old link cannot act on a later reader.
--
-- SQLite only keeps ids from coming back with AUTOINCREMENT, which a table
-- gets when it is made: the table is rebuilt (the documented procedure for
-- changes ALTER TABLE cannot make; migrations run with foreign keys off and
-- are checked with PRAGMA foreign_key_check after). Subscribers already here keep their ids and are marked
-- `legacy_tokens`: the unsubscribe links in digests mailed before this
-- version carry no key and keep working for them, and only for them.
CREATE TABLE subscribers_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT,
    created         TEXT NOT NULL,
    hard_bounces    INTEGER NOT NULL DEFAULT 0,
    confirm_sent_at TEXT,
    token_key       TEXT NOT NULL,
    legacy_tokens   INTEGER NOT NULL DEFAULT 0
);
INSERT INTO subscribers_new (id, email, name, created, hard_bounces, confirm_sent_at, token_key, legacy_tokens)
    SELECT id, email, name, created, hard_bounces, confirm_sent_at, lower(hex(randomblob(16))), 1
    FROM subscribers;
DROP TABLE subscribers;
ALTER TABLE subscribers_new RENAME TO subscribers;

-- A web sign-up that was mailed a confirmation link: the link names the
-- sign-up, acts on its lists once, and never brings back a reader who left
-- one of them after signing up.
CREATE TABLE signups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber   INTEGER NOT NULL REFERENCES subscribers (id),
    lists        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    confirmed_at TEXT
);
CREATE INDEX signups_by_subscriber ON signups (subscriber);
