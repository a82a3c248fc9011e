-- commerce: an exchange reserves the replacement's stock when it is registered
-- (where, and how much), and sends it out when the returned goods arrive.
ALTER TABLE commerce.return_items
    ADD COLUMN replacement_warehouse text REFERENCES commerce.warehouses (code),
    ADD COLUMN replacement_reserved  integer NOT NULL DEFAULT 0 CHECK (replacement_reserved BETWEEN 0 AND 100000);
