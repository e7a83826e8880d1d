"""Everything saybot keeps in Redis/Valkey: the audio cache with single-flight
(``cache``), reference clips (``voices``), usage counters (``usage``) and rate limits
(``ratelimit``), over one connection (``redis``); keys and TTLs live in ``keys``."""
