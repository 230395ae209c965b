-- Hard bounces (5.1.x, 5.2.1: the address does not exist) per subscriber;
-- after mail.suppress_after of them the address is suppressed.
ALTER TABLE subscribers ADD COLUMN hard_bounces INTEGER NOT NULL DEFAULT 0;
