-- Telephones that replied STOP (entrypoints/kannel.py): no SMS is sent to them any
-- more. Only a keyed hash of the E.164 number is kept (Vault.blind_index, kind
-- `sms-opt-out`), never the number; and the date of the reply.
CREATE TABLE sms_opt_outs (
    number_index text PRIMARY KEY,
    opted_out_at timestamptz NOT NULL
);
