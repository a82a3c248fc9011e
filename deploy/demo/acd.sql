-- A small demo floor: three queues and five agents (softphones 1001-1005).
INSERT INTO acd.queues (name, description, strategy, skills, widen, wrap_up_ms, sticky_ms) VALUES
    ('sales',   'Orders and products', 'longest_idle', 'sales:1',   '60000:0', 5000, 120000),
    ('support', 'Deliveries, returns, complaints', 'fewest_calls', 'support:1', '60000:0', 10000, 120000),
    ('vip',     'VIP customers', 'best_skill', 'sales:3', '30000:0,90000:-1', 5000, 300000)
ON CONFLICT (name) DO NOTHING;

INSERT INTO acd.agents (id, name, extension, skills, queues) VALUES
    ('1001', 'Anna',  '1001', 'sales:5,support:2,english:3', 'sales,vip'),
    ('1002', 'Bo',    '1002', 'sales:3,support:4',           'sales,support'),
    ('1003', 'Chen',  '1003', 'support:5,mandarin:5',        'support'),
    ('1004', 'Dana',  '1004', 'sales:4,support:4,english:5', 'sales,support,vip'),
    ('1005', 'Emil',  '1005', 'support:3',                   'support')
ON CONFLICT (id) DO NOTHING;
