"""Everything saybot keeps in Redis/Valkey: the audio cache (``cache``, its keys derived in
``cache_keys``, one synthesis per key via ``singleflight``), reference clips (``voices``),
usage counters (``usage``), rate limits (``ratelimit``) and the engine last seen
(``engine_identity``), over one connection (``redis``); keys and TTLs live in ``keys``,
and every call to Redis goes through the guard in ``metrics``."""
