-- A UDPST test's verdict is on its MaxIPLayerCapacity (docs/METHODOLOGY.md §3, §10),
-- and reports give each access's capacity beside its TCP figures (§7.3): each report
-- row keeps the capacity of each direction (capacity.*.max_ip_capacity_bps; NULL for
-- a TCP test), filled from the stored records, and a UDPST test's judged rate
-- (down_bps, up_bps, NULL until now) becomes its capacity. A row whose record
-- retention already deleted keeps NULL.
ALTER TABLE report_facts ADD COLUMN cap_down_bps REAL;
ALTER TABLE report_facts ADD COLUMN cap_up_bps REAL;
UPDATE report_facts SET
    cap_down_bps = (
        SELECT json_extract(r.record, '$.capacity.down.max_ip_capacity_bps') FROM results r
        WHERE r.rowid = report_facts.result_rowid
    ),
    cap_up_bps = (
        SELECT json_extract(r.record, '$.capacity.up.max_ip_capacity_bps') FROM results r
        WHERE r.rowid = report_facts.result_rowid
    );
UPDATE report_facts SET down_bps = cap_down_bps WHERE down_bps IS NULL;
UPDATE report_facts SET up_bps = cap_up_bps WHERE up_bps IS NULL;
