-- The reader's side (issue 16): the rationing of manage-link mails, and
-- click counts of lists that track clicks.
--
-- When a manage link ("email me a link to manage my subscription") was last
-- mailed to the subscriber: at most one per web.confirm_mail_interval_minutes,
-- kept apart from confirm_sent_at so one kind of mail never holds back the
-- other.
ALTER TABLE subscribers ADD COLUMN manage_sent_at TEXT;

-- Clicks on an edition's article links when no reader is recorded (a list
-- with track_clicks and not individual): one counter per edition and article.
CREATE TABLE link_clicks (
    edition BIGINT NOT NULL REFERENCES editions (id),
    article BIGINT NOT NULL,
    clicks  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (edition, article)
);

-- Clicks with the reader (individual = true): one row per reader and link,
-- however often they click it. Deleted with the reader (forget).
CREATE TABLE reader_clicks (
    edition    BIGINT NOT NULL REFERENCES editions (id),
    article    BIGINT NOT NULL,
    subscriber BIGINT NOT NULL REFERENCES subscribers (id),
    at         TEXT NOT NULL,
    PRIMARY KEY (edition, article, subscriber)
);
CREATE INDEX reader_clicks_by_subscriber ON reader_clicks (subscriber);
