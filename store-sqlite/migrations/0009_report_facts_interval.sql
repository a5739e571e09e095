-- Scheduled tests and manual probes are told apart (docs/METHODOLOGY.md §7.2, version
-- 4): each report row keeps the schedule its test ran on (run.interval_s; NULL for a
-- `probe`), filled from the stored records. A row whose record retention already
-- deleted keeps NULL and counts as a manual probe.
ALTER TABLE report_facts ADD COLUMN interval_s REAL;
UPDATE report_facts SET interval_s = (
    SELECT json_extract(r.record, '$.run.interval_s') FROM results r
    WHERE r.rowid = report_facts.result_rowid
);
