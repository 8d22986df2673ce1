-- How many times a message was sent again after an attempt left it in
-- doubt (the per-channel policy allows it): a duplicate at the receiver is
-- possible exactly for these messages and for those still `in_doubt`.
ALTER TABLE messages ADD COLUMN in_doubt_resends integer NOT NULL DEFAULT 0;
