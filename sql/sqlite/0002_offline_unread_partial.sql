-- The offline pull reads unread rows only. Keyed on has_read, the index kept
-- an entry for every row ever queued, and each claim moved its entry from
-- the has_read = 0 run to the has_read = 1 run: two leaf pages rewritten
-- per claim, and an index that grew with all history. Restricted to unread
-- rows it is as small as the backlog, and a claim only removes an entry.
DROP INDEX offline_unread;
CREATE INDEX offline_unread ON offline (user_id, id) WHERE has_read = 0;
