-- Which file of a `dir` source owns each article: its path relative to the
-- source's folder, '/'-separated. The first file to claim a slug keeps it
-- for as long as it exists and claims it. NULL for upstream entries, for an
-- article whose file was deleted, and for articles stored before this
-- migration until their next collect.
ALTER TABLE articles ADD COLUMN path TEXT;

-- Taken down by collect: its file was deleted ('deleted') or set
-- `draft = true` ('draft'). Cleared when the file comes back.
ALTER TABLE articles ADD COLUMN withdrawn TEXT CHECK (withdrawn IN ('deleted', 'draft'));
ALTER TABLE articles ADD COLUMN withdrawn_at TEXT;

-- Taken down by an operator (`herald articles unpublish`). No collect
-- brings it back; only `herald articles republish` does.
ALTER TABLE articles ADD COLUMN unpublished_at TEXT;
