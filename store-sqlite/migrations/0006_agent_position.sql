-- Where an agent's position came from: 0 its enrolment token (kept as given), 1 the
-- box's own configuration, sent with its health (follows the box's latest).
ALTER TABLE agents ADD COLUMN position_from_agent INTEGER NOT NULL DEFAULT 0;
