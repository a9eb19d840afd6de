// PHP webshells: code that runs what a request sends. Written for Ringfence (Apache-2.0).

rule php_eval_request_decode {
  meta:
    level = "high"
    description = "PHP evaluates decoded request data (eval/assert of base64/gzinflate/rot13 of $_POST, $_GET, $_REQUEST or $_COOKIE)"
    attack = "T1505.003"
  strings:
    $php = "<?"
    $eval = /\b(eval|assert)\s*\(/ nocase
    $dec = /\b(base64_decode|gzinflate|gzuncompress|str_rot13|strrev)\s*\(/ nocase
    $req = /\$_(POST|GET|REQUEST|COOKIE)\s*\[/
  condition:
    filesize < 2MB and $php and $eval and $dec and $req
      and for any i in (1..#eval) : ( for any j in (1..#req) : ( @req[j] > @eval[i] and @req[j] - @eval[i] < 200 ) )
}

rule php_exec_request {
  meta:
    level = "high"
    description = "PHP passes request data straight to a shell (system, passthru, shell_exec, exec, popen, proc_open)"
    attack = "T1505.003"
  strings:
    $php = "<?"
    $call = /\b(system|passthru|shell_exec|exec|popen|proc_open)\s*\(\s*(@\s*)?\$_(POST|GET|REQUEST|COOKIE|SERVER\s*\[\s*['"]HTTP_)/ nocase
  condition:
    filesize < 2MB and $php and $call
}

rule php_request_function_call {
  meta:
    level = "high"
    description = "PHP calls a function whose name comes from the request ($_GET['f']($_GET['a']) and the like)"
    attack = "T1505.003"
  strings:
    $php = "<?"
    $dyn = /\$_(POST|GET|REQUEST|COOKIE)\s*\[\s*['"][^'"]{1,32}['"]\s*\]\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)/
  condition:
    filesize < 2MB and $php and $dyn
}
