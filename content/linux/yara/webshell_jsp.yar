// JSP webshells: pages that run commands or load classes sent in a request.
// Written for Ringfence (Apache-2.0).

rule jsp_exec_request {
  meta:
    level = "high"
    description = "JSP runs a command taken from the request (Runtime.exec or ProcessBuilder of request.getParameter)"
    attack = "T1505.003"
  strings:
    $jsp1 = "<%"
    $jsp2 = "<jsp:" nocase
    $exec1 = /Runtime\s*\.\s*getRuntime\s*\(\s*\)\s*\.\s*exec\s*\(/
    $exec2 = "new ProcessBuilder("
    $param = /request\s*\.\s*getParameter\s*\(/
  condition:
    filesize < 2MB and ($jsp1 or $jsp2) and ($exec1 or $exec2) and $param
}

rule jsp_define_class_request {
  meta:
    level = "critical"
    description = "JSP defines a Java class from request bytes (memory shell loaders: defineClass of decoded request data)"
    attack = "T1505.003"
  strings:
    $jsp = "<%"
    $define = "defineClass" nocase
    $decode1 = "getDecoder()"
    $decode2 = "BASE64Decoder"
    $decode3 = "decodeBuffer"
    $req1 = "request.getReader()"
    $req2 = "request.getParameter("
    $req3 = "request.getInputStream()"
  condition:
    filesize < 2MB and $jsp and $define and any of ($decode*) and any of ($req*)
}
