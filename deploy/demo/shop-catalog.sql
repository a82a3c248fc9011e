-- The demo shop's catalogue and stock, the lines and parcel of its orders, a
-- customer's points, and a Shopify store (secret for trying the Shopify path).
INSERT INTO commerce.platforms (name, dialect, secret, domain, currency)
VALUES ('demo-shopify', 'shopify', 'shpss_demo_9d1f0c7b2a', 'demo-store.myshopify.com', 'USD')
ON CONFLICT (name) DO NOTHING;

INSERT INTO commerce.warehouses (code, name, address) VALUES
    ('BJ-1', 'Beijing North', '8 Jiuxianqiao Rd, Chaoyang, Beijing'),
    ('SH-1', 'Shanghai Pudong', '1000 Zhangjiang Rd, Pudong, Shanghai')
ON CONFLICT (code) DO NOTHING;

INSERT INTO commerce.products (code, platform, name, category, price_minor, currency, specification, version) VALUES
    ('TV-55', 'demo-shop', '55-inch 4K TV', 'tv', 129900, 'CNY', '{"size": "55 inch", "panel": "LED"}', 1),
    ('SB-2', 'demo-shop', 'Soundbar', 'audio', 39900, 'CNY', '{"channels": "2.1"}', 1),
    ('HDMI-2', 'demo-shop', 'HDMI cable 2 m', 'accessories', 0, 'CNY', '{"length": "2 m"}', 1)
ON CONFLICT (code) DO NOTHING;

INSERT INTO commerce.stock (product_code, warehouse_code, on_hand, reserved) VALUES
    ('TV-55', 'BJ-1', 12, 0), ('TV-55', 'SH-1', 0, 0), ('SB-2', 'BJ-1', 30, 1), ('HDMI-2', 'BJ-1', 200, 0)
ON CONFLICT (product_code, warehouse_code) DO NOTHING;

INSERT INTO commerce.order_items (order_number, line, sku, name, quantity, unit_minor) VALUES
    ('D1001', 1, 'TV-55', '55-inch 4K TV', 1, 129900), ('D1001', 2, 'HDMI-2', 'HDMI cable 2 m', 1, 0),
    ('D1002', 1, 'SB-2', 'Soundbar', 1, 39900)
ON CONFLICT (order_number, line) DO NOTHING;

INSERT INTO commerce.shipments (order_number, platform, external_id, warehouse_code, carrier, tracking_number, fee_minor,
                                currency, status, shipped_at)
VALUES ('D1001', 'demo-shop', 'demo-parcel-1', 'BJ-1', 'SF Express', 'SF1400000001', 0, 'CNY', 'in_transit', now())
ON CONFLICT DO NOTHING;

INSERT INTO commerce.customer_phones (customer_id, phone)
SELECT id, phone FROM commerce.customers WHERE platform = 'demo-shop' AND external_id = 'cust-1'
ON CONFLICT DO NOTHING;

INSERT INTO commerce.points_ledger (customer_id, delta, reason, ref, order_number)
SELECT id, 1299, 'purchase', 'order:D1001', 'D1001' FROM commerce.customers
WHERE platform = 'demo-shop' AND external_id = 'cust-1'
ON CONFLICT (customer_id, ref) DO NOTHING;
