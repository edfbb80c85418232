-- The citizen's status code, made when the referral is routed (issue #13 item 4), is
-- also kept sealed (relais_kit.vault, bound to the referral id: adapters/sealed.py
-- STATUS_CODE) so that it can be printed again on the receipt and put in the messages
-- that tell the citizen of each step; `code_index` still finds the referral of a typed
-- code. Rows made before (a receipt printed, only the keyed hash kept) have no sealed
-- code: their printed code keeps working, and the next print makes a new one to keep.
ALTER TABLE status_links ADD COLUMN code text;
