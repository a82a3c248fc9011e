-- A demo shop platform (webhook secret for trying the API) and two orders.
INSERT INTO commerce.platforms (name, secret)
VALUES ('demo-shop', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')
ON CONFLICT (name) DO NOTHING;
INSERT INTO commerce.customers (platform, external_id, name, phone, email)
VALUES ('demo-shop', 'cust-1', 'Wang Fang', '13800138000', 'wang.fang@example.com')
ON CONFLICT (platform, external_id) DO NOTHING;
INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version)
SELECT v.num, 'demo-shop', c.id, v.status, v.total, 'CNY', 1
FROM (VALUES ('D1001', 'shipped', 129900), ('D1002', 'ordered', 39900)) AS v (num, status, total),
     commerce.customers c WHERE c.external_id = 'cust-1'
ON CONFLICT (order_number) DO NOTHING;
