-- telephony: the phones' registrations (one binding per user), so that a
-- restarted gateway still rings them. Written by the gateway when a REGISTER
-- is accepted or removes the binding; read at start, expired ones dropped.
CREATE TABLE telephony.registrations (
    username   text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.-]{1,63}$'),
    contact    text NOT NULL,                           -- the phone's Contact URI
    transport  text NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls', 'ws', 'wss')),
    source     text NOT NULL,                           -- ip:port the REGISTER came from
    expires_at timestamptz NOT NULL,
    instance   text NOT NULL,                           -- the gateway that accepted it
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registrations_expires ON telephony.registrations (expires_at);
