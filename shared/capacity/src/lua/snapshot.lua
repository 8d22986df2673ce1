-- A provider's window counters for the checkpoint, or nil while they have
-- not been restored since Redis lost its keys (a checkpoint of the empty
-- hash would overwrite the one that restores it).
--
-- KEYS[1]  key prefix of the provider, hash-tagged: "<ns>:cap:{<provider>}"
if redis.call('EXISTS', KEYS[1] .. ':ready') == 0 then return false end
return redis.call('HGETALL', KEYS[1] .. ':w')
