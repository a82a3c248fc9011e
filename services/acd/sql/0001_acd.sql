-- acd: queue and agent definitions. Live state is in Redis (acd.lua).
CREATE SCHEMA IF NOT EXISTS acd;

CREATE TABLE acd.queues (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,64}$'),
    description      text NOT NULL DEFAULT '',
    strategy         text NOT NULL DEFAULT 'longest_idle'
                     CHECK (strategy IN ('longest_idle', 'fewest_calls', 'round_robin', 'best_skill')),
    skills           text NOT NULL DEFAULT '',        -- "sales:3,english:1"
    widen            text NOT NULL DEFAULT '',        -- "30000:2,60000:0,90000:-1"
    offer_timeout_ms integer NOT NULL DEFAULT 15000 CHECK (offer_timeout_ms BETWEEN 1000 AND 300000),
    wrap_up_ms       integer NOT NULL DEFAULT 10000 CHECK (wrap_up_ms BETWEEN 0 AND 3600000),
    max_len          integer NOT NULL DEFAULT 0 CHECK (max_len >= 0),
    sticky_ms        integer NOT NULL DEFAULT 0 CHECK (sticky_ms >= 0),
    service_level_ms integer NOT NULL DEFAULT 20000 CHECK (service_level_ms > 0)
);

CREATE TABLE acd.agents (
    id        text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name      text NOT NULL DEFAULT '',
    extension text NOT NULL DEFAULT '',
    skills    text NOT NULL DEFAULT '',                -- "sales:5,english:2"
    queues    text NOT NULL DEFAULT ''                 -- "sales,support"
);
