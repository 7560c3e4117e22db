-- A delivery can be in the dead-letter queue (`liaison.dead`) until an operator redrives it.
ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check
    CHECK (state IN ('pending', 'dispatched', 'acknowledged', 'dead'));
