-- Reports give each access's responsiveness (docs/METHODOLOGY.md §7.3, §11): each
-- report row keeps the RPM of each direction (responsiveness.*.rpm; NULL for a test
-- that did not measure it), filled from the stored records. A row whose record
-- retention already deleted keeps NULL.
ALTER TABLE report_facts ADD COLUMN rpm_down REAL;
ALTER TABLE report_facts ADD COLUMN rpm_up REAL;
UPDATE report_facts SET
    rpm_down = (
        SELECT json_extract(r.record, '$.responsiveness.down.rpm') FROM results r
        WHERE r.rowid = report_facts.result_rowid
    ),
    rpm_up = (
        SELECT json_extract(r.record, '$.responsiveness.up.rpm') FROM results r
        WHERE r.rowid = report_facts.result_rowid
    )
WHERE EXISTS (
    SELECT 1 FROM results r
    WHERE r.rowid = report_facts.result_rowid AND r.record LIKE '%"responsiveness"%'
);
