-- telephony: agent phones' SIP credentials, hashed (HA1 = md5(user:realm:password)).
CREATE TABLE telephony.sip_users (
    username text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.-]{1,63}$'),
    ha1      text NOT NULL CHECK (ha1 ~ '^[0-9a-f]{32}$'),
    enabled  boolean NOT NULL DEFAULT true,
    agent_id text NOT NULL DEFAULT ''
);
