-- The articles each list has considered for its editions: every article the
-- compose of one of its editions read, whether the edition took it or left
-- it out (the same story twice, beyond max_articles, taken down, not for
-- digests). The articles new for a list's next edition are those without a
-- row here, whatever their ids: an article that commits after an edition
-- under a lower id than the edition's articles is still new.
--
-- A store from before starts with every article up to the newest one each
-- list's editions covered (its highest `article_cursor`).
--
-- `article` is an article's id; no foreign key (articles are never deleted,
-- and the check on open would read every row of this table each time).
CREATE TABLE list_articles (
    list    TEXT NOT NULL,
    article INTEGER NOT NULL,
    PRIMARY KEY (list, article)
) WITHOUT ROWID;

INSERT INTO list_articles (list, article)
    SELECT e.list, a.id
    FROM (SELECT list, MAX(article_cursor) AS upto FROM editions GROUP BY list) e
    JOIN articles a ON a.id <= e.upto;
