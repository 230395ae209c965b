-- When the last confirmation mail went to an address: at most one goes out
-- in web.confirm_mail_interval_minutes, however often the form is posted.
ALTER TABLE subscribers ADD COLUMN confirm_sent_at TEXT;
