-- A feed source's whole fetch state in its row (it was partly kept in
-- settings), so one query before a collect reads every source's state.
ALTER TABLE sources ADD COLUMN next_try TEXT;   -- backing off until this time
ALTER TABLE sources ADD COLUMN moved_to TEXT;   -- where a 301 or 308 moved the feed
ALTER TABLE sources ADD COLUMN gone_since TEXT; -- the date the feed answered 410

UPDATE sources SET
    next_try = (SELECT value FROM settings WHERE key = 'source-next-try:' || sources.name),
    moved_to = (SELECT value FROM settings WHERE key = 'source-url:' || sources.name),
    gone_since = (SELECT value FROM settings WHERE key = 'source-gone:' || sources.name);

DELETE FROM settings
WHERE key LIKE 'source-next-try:%' OR key LIKE 'source-url:%' OR key LIKE 'source-gone:%';
