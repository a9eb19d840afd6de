// Linux backdoors: reverse shells, user-land rootkits preloaded into every process, and
// scripts that plant SSH keys and lock them. Written for Ringfence (Apache-2.0).

rule backdoor_reverse_shell {
  meta:
    level = "high"
    description = "an interactive shell wired to a network socket (bash -i >& /dev/tcp/HOST/PORT 0>&1, nc -e, socat exec, python pty)"
    attack = "T1059.004"
  strings:
    $devtcp = /\b(ba)?sh\s+-i\s*[0-9]?>&\s*\/dev\/(tcp|udp)\/[a-zA-Z0-9.\-]{1,128}\/[0-9]{1,5}\s+0>&1/
    $nc = /\b(nc|ncat|netcat)(\.traditional)?\s+(-[a-z]+\s+)*-e\s+\/bin\/(ba)?sh\b/
    $socat = /socat\s+[^\n]{0,100}exec:['"]?(\/bin\/)?(ba)?sh\s+-li?/ nocase
    $pty = /socket\.socket\([^\n]{0,200}\.connect\(\([^\n]{0,200}pty\.spawn\(['"]\/bin\/(ba)?sh/
  condition:
    filesize < 5MB and any of them
}

rule backdoor_ld_preload_rootkit {
  meta:
    level = "critical"
    description = "an ELF shared object that hides files or processes by hooking readdir and manages /etc/ld.so.preload"
    attack = "T1574.006"
  strings:
    $preload = "/etc/ld.so.preload"
    $readdir = "readdir"
    $dlsym = "dlsym"
    $hide1 = "/proc/self/fd" 
    $hide2 = "/proc/%d"
    $hide3 = "/proc/net/tcp"
  condition:
    uint32(0) == 0x464c457f and $preload and $readdir and $dlsym and any of ($hide*)
}

rule backdoor_ssh_key_implant {
  meta:
    level = "high"
    description = "a script that appends a key to authorized_keys and makes it immutable (chattr +i)"
    attack = "T1098.004"
  strings:
    $append = /(>>|tee\s+-a)\s*[^\n]{0,64}\.ssh\/authorized_keys/
    $chattr = /chattr\s+(-R\s+)?\+[ia]+\s+[^\n]{0,64}(\.ssh|authorized_keys)/
    $key = /ssh-(rsa|ed25519) AAAA/
  condition:
    filesize < 1MB and $append and $chattr and $key
}
