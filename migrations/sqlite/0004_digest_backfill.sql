-- Whether an article counts as new for digests. A feed source's back
-- catalogue, collected the first time, is published in the feeds but not
-- mailed (see [[sources]] backfill).
ALTER TABLE articles ADD COLUMN in_digest INTEGER NOT NULL DEFAULT 1;
