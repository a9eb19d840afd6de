// Cryptocurrency miners on Linux servers: mining-pool URLs, XMRig-style pool configs and
// miner binaries. Written for Ringfence (Apache-2.0).

rule miner_stratum_pool_url {
  meta:
    level = "high"
    description = "a stratum mining-pool URL (stratum+tcp://, stratum+ssl://, stratum2+tcp://)"
    attack = "T1496"
  strings:
    $url = /stratum2?\+(tcp|ssl|tls):\/\/[a-zA-Z0-9.\-]{3,128}:[0-9]{2,5}/ nocase
  condition:
    $url
}

rule miner_pool_config_json {
  meta:
    level = "high"
    description = "a miner's JSON configuration (pools with url and user, plus donate-level, randomx or cpu sections)"
    attack = "T1496"
  strings:
    $pools = /"pools"\s*:\s*\[/
    $url = /"url"\s*:\s*"/
    $user = /"user"\s*:\s*"/
    $donate = /"donate-level"\s*:/
    $randomx = /"randomx"\s*:\s*\{/
    $cpu = /"cpu"\s*:\s*\{/
    $algo = /"algo"\s*:\s*"(rx|cn|argon2|kawpow|ghostrider)/
  condition:
    filesize < 1MB and $pools and $url and $user and 2 of ($donate, $randomx, $cpu, $algo)
}

rule miner_xmrig_binary {
  meta:
    level = "critical"
    description = "an ELF binary with the strings of an XMRig-family miner"
    attack = "T1496"
  strings:
    $name = "xmrig" nocase
    $opt1 = "--donate-level"
    $opt2 = "--coin"
    $rx = "randomx" nocase
    $stratum = "stratum+tcp://"
    $nicehash = "nicehash" nocase
  condition:
    uint32(0) == 0x464c457f and $name and $rx and 2 of ($opt1, $opt2, $stratum, $nicehash)
}
