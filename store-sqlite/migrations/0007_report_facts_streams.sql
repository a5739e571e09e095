-- ARCEP's 3/8/30 Mb/s shares count single-connection tests only (docs/METHODOLOGY.md
-- §7.3): each report row keeps the streams its test asked for (run.streams), filled
-- from the stored records. A row whose record retention already deleted keeps NULL,
-- and is not counted as a single-connection test.
ALTER TABLE report_facts ADD COLUMN streams INTEGER;
UPDATE report_facts SET streams = (
    SELECT json_extract(r.record, '$.run.streams') FROM results r
    WHERE r.rowid = report_facts.result_rowid
);
