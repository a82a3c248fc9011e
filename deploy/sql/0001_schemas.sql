-- One schema per owning service (DESIGN.md). A service writes only its own
-- schema; its own migrations (services/<name>/sql/) create its tables.
CREATE SCHEMA IF NOT EXISTS telephony;
CREATE SCHEMA IF NOT EXISTS ivr;
CREATE SCHEMA IF NOT EXISTS acd;
CREATE SCHEMA IF NOT EXISTS commerce;
CREATE SCHEMA IF NOT EXISTS notify;
CREATE SCHEMA IF NOT EXISTS stats;
CREATE SCHEMA IF NOT EXISTS desk;
CREATE SCHEMA IF NOT EXISTS auth;
