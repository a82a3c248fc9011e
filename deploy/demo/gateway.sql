-- Demo softphones 1001-1005, password "secret<ext>" in realm "callcenter".
INSERT INTO telephony.sip_users (username, ha1, agent_id)
SELECT ext, md5(ext || ':callcenter:secret' || ext), ext
FROM (VALUES ('1001'), ('1002'), ('1003'), ('1004'), ('1005')) AS t (ext)
ON CONFLICT (username) DO NOTHING;
