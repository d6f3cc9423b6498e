#!/usr/bin/env bash
# TLS distribution (-proto_dist inet_tls) between `girder node` and real OTP
# nodes (tests/interop/dist_tls.erl).  Makes a CA and node certificates with
# the openssl command, plus a second CA and a certificate it signed, writes
# the optfile OTP reads, and checks: OTP -> girder ping, echo and rpc:call
# round trips, 1 MB binaries, order; girder -> OTP (girder dials a fresh OTP
# TLS node and sends first); two girder nodes over TLS (the second one
# configured with -ssl_dist_opt pairs); refusals that leave the node
# serving, each with its log line: an OTP client and an OTP server whose
# certificates the other CA signed, a server whose certificate does not name
# the host dialled, a plain-TCP OTP node, a peer that never
# starts TLS (net_setuptime); bad configurations at start (one line, exit
# 1).  A private EPMD (girder epmd on a free port) and names with the pid
# keep parallel runs apart.  Fails (does not skip) without erl, erlc or
# openssl.
#   dist_tls.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
trap girder_cleanup EXIT
command -v openssl >/dev/null || fail "openssl not installed"
interop_suite_setup dist_tls.erl

# ---- certificates: ca signs node (both roles, every host spelling used in
# node names); ca2 signs rogue.
pki=$work/pki
mkdir -p "$pki"
short=$(hostname -s)
printf "subjectAltName=DNS:localhost,DNS:%s,DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n" \
  "$short" "$(hostname)" >"$pki/ext.cnf"
mkcert() { # mkcert <ca-name> <cert-name>
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$pki/$2.key" -out "$pki/$2.csr" \
    2>/dev/null &&
  openssl x509 -req -in "$pki/$2.csr" -CA "$pki/$1.pem" -CAkey "$pki/$1.key" -CAcreateserial \
    -days 2 -extfile "$pki/ext.cnf" -out "$pki/$2.pem" 2>/dev/null
}
for ca in ca ca2; do
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=girder-test-$ca" \
    -keyout "$pki/$ca.key" -out "$pki/$ca.pem" 2>/dev/null || fail "openssl: $ca"
done
mkcert ca node || fail "openssl: node cert"
mkcert ca2 rogue || fail "openssl: rogue cert"

# optfile <file> <cert> <key> <cacert>: the file an OTP node reads.
optfile() {
  cat >"$1" <<CONF
%% ssl_dist options (-ssl_dist_optfile), as OTP's inet_tls_dist reads them.
[{server, [{certfile, "$2"}, {keyfile, "$3"}, {cacertfile, "$4"},
           {verify, verify_peer}, {fail_if_no_peer_cert, true},
           {secure_renegotiate, true}, {depth, 4}]},
 {client, [{certfile, "$2"}, {keyfile, "$3"}, {cacertfile, "$4"},
           {verify, verify_peer}, {secure_renegotiate, true}]}].
CONF
}
optfile "$work/good.conf" "$pki/node.pem" "$pki/node.key" "$pki/ca.pem"
# rogue trusts our CA (so it would accept girder's certificate) but shows one
# the other CA signed: the refusal is girder's.
optfile "$work/rogue.conf" "$pki/rogue.pem" "$pki/rogue.key" "$pki/ca.pem"

g=gdtls$$; g2=gdtlsb$$; cookie=gdcookie$$abcdefghij
tls=(-proto_dist inet_tls -ssl_dist_optfile "$work/good.conf")

# ---- bad configurations: one line, exit 1, before anything starts.
printf '[{server, [{certfile, "x"}' >"$work/broken.conf"
"$girder" node -sname "gbad$$" -setcookie "$cookie" -proto_dist inet_tls \
  -ssl_dist_optfile "$work/broken.conf" 2>"$work/bad.out"
[ $? = 1 ] || fail "broken optfile: exit status not 1"
grep -q "bad -ssl_dist_optfile: .*broken.conf: syntax error" "$work/bad.out" ||
  fail "broken optfile: $(cat "$work/bad.out")"
"$girder" node -sname "gbad$$" -setcookie "$cookie" -proto_dist inet_tls \
  -ssl_dist_opt server_certfile "$work/nonexistent.pem" 2>"$work/bad.out"
[ $? = 1 ] || fail "missing certfile: exit status not 1"
grep -q "TLS: server certfile .*nonexistent.pem" "$work/bad.out" ||
  fail "missing certfile: $(cat "$work/bad.out")"
printf '[{server, [{certfile, "%s"}, {verify, verify_peer}, {frobnicate, 1}]}].' \
  "$pki/node.pem" >"$work/unknown.conf"
"$girder" node -sname "gbad$$" -setcookie "$cookie" -proto_dist inet_tls \
  -ssl_dist_optfile "$work/unknown.conf" 2>"$work/bad.out"
[ $? = 1 ] || fail "unknown option: exit status not 1"
grep -q "unknown server option 'frobnicate'" "$work/bad.out" || fail "unknown option: $(cat "$work/bad.out")"
# bad_flags <expected line part> <girder node flags...>: exit 1 or 2 with
# that line, nothing registered.
bad_flags() {
  local want=$1; shift
  "$girder" node -sname "gbad$$" -setcookie "$cookie" "$@" 2>"$work/bad.out"
  local rc=$?
  { [ $rc = 1 ] || [ $rc = 2 ]; } || fail "$*: exit status $rc"
  grep -qF "$want" "$work/bad.out" || fail "$*: $(cat "$work/bad.out")"
}
bad_flags "need -proto_dist inet_tls" -ssl_dist_optfile "$work/good.conf"
bad_flags "not both" -proto_dist inet_tls -ssl_dist_optfile "$work/good.conf" \
  -ssl_dist_opt server_certfile "$pki/node.pem"
bad_flags "only inet_tcp and inet_tls" -proto_dist inet6_tls
bad_flags "needs Key Value pairs" -proto_dist inet_tls -ssl_dist_opt -hidden
bad_flags "unknown option 'server_frobnicate'" -proto_dist inet_tls -ssl_dist_opt server_frobnicate 1
bad_flags "server: no certfile" -proto_dist inet_tls -ssl_dist_opt client_verify verify_none
bad_flags "key values mismatch" -proto_dist inet_tls -ssl_dist_opt server_certfile "$pki/node.pem" \
  server_keyfile "$pki/rogue.key"
bad_flags "cannot open $work/none.conf" -proto_dist inet_tls -ssl_dist_optfile "$work/none.conf"
"$girder" names -port "$port" | grep -q "gbad$$" && fail "a bad configuration registered"

# ---- two TLS girder nodes: g from the optfile, g2 from -ssl_dist_opt pairs.
start_girder_node "$work/girder.log" -sname "$g" -setcookie "$cookie" "${tls[@]}"
node_pid=$girder_node_pid
start_girder_node "$work/girder2.log" -sname "$g2" -setcookie "$cookie" -kernel net_setuptime 2 -proto_dist inet_tls \
  -ssl_dist_opt server_certfile "$pki/node.pem" server_keyfile "$pki/node.key" \
                server_cacertfile "$pki/ca.pem" server_verify verify_peer \
                server_fail_if_no_peer_cert true \
  -ssl_dist_opt client_certfile "$pki/node.pem" client_keyfile "$pki/node.key" \
                client_cacertfile "$pki/ca.pem" client_verify verify_peer
node2_pid=$girder_node_pid
wait_girder_registered "$g" "$node_pid"
wait_girder_registered "$g2" "$node2_pid"
grep -q "WARNING: TLS" "$work/girder.log" "$work/girder2.log" && fail "verified setup warned"

erl -sname "ta$$" -setcookie "$cookie" "${tls[@]}" -noshell -pa "$work" \
    -eval "dist_tls:main([\"$g@$host\", \"$g2@$host\", \"$work/good.conf\",
                          \"$work/rogue.conf\"])" >"$work/checks.out" 2>&1 ||
  { cat "$work/checks.out"; fail "dist_tls checks"; }
cat "$work/checks.out"
# girder as client: the other-CA server was refused, with a line.
rogue=$(sed -n 's/^rogue server: //p' "$work/checks.out")
[ -n "$rogue" ] || fail "no rogue server name"
grep -q "connection to $rogue: TLS handshake with 127.0.0.1:[0-9]* failed: peer certificate refused: unable to get local issuer certificate" \
  "$work/girder.log" || fail "girder did not log refusing the other-CA server $rogue"

# erl_result <erl args...>: what the node printed after "result=" (OTP's
# own TLS notices go to the same stdout).
erl_result() { erl "$@" | sed -n 's/^result=//p'; }

# ---- a peer whose certificate the other CA signed: pang, a refusal line.
out=$(erl_result -sname "tr$$" -setcookie "$cookie" -proto_dist inet_tls \
        -ssl_dist_optfile "$work/rogue.conf" -noshell \
        -eval "io:format(\"result=~p~n\", [net_adm:ping('$g@$host')]), halt().")
[ "$out" = pang ] || fail "other-CA peer gave $out"
grep -q "connection closed: TLS handshake with 127.0.0.1:[0-9]* failed: peer certificate refused: unable to get local issuer certificate" "$work/girder.log" ||
  fail "no refusal of the other-CA certificate logged"

# ---- a plain-TCP peer: pang, a refusal line.
out=$(erl_result -sname "tp$$" -setcookie "$cookie" -noshell \
        -eval "io:format(\"result=~p~n\", [net_adm:ping('$g@$host')]), halt().")
[ "$out" = pang ] || fail "plain-TCP peer gave $out"
grep -q "connection closed: TLS handshake with 127.0.0.1:[0-9]* failed: the peer does not speak TLS" "$work/girder.log" ||
  fail "no refusal of the plain-TCP peer logged"

# ---- a peer that connects and never starts TLS is closed after
# net_setuptime (2 s on g2); g2 keeps serving.
p2=$("$girder" names -port "$port" | sed -n "s/^name $g2 at port //p")
[ -n "$p2" ] || fail "no port for $g2"
exec 3<>"/dev/tcp/127.0.0.1/$p2" || fail "cannot connect to $g2"
sleep 3.5
exec 3>&-
grep -q "connection closed: handshake timed out (net_setuptime)" "$work/girder2.log" ||
  fail "a silent peer was not closed after net_setuptime"
out=$(erl_result -sname "th$$" -setcookie "$cookie" "${tls[@]}" -noshell \
        -eval "io:format(\"result=~p~n\", [net_adm:ping('$g2@$host')]), halt().")
[ "$out" = pong ] || fail "$g2 after a silent peer: $out"

# ---- girder as client checks the server's host name, as OTP's client
# does: g3 expects "wrong.example" (server_name_indication), so g's
# certificate, although our CA signed it, is refused when g3 dials g.
sed 's/{verify, verify_peer}, {secure_renegotiate, true}\]}\]\./{verify, verify_peer}, {server_name_indication, "wrong.example"}]}]./' \
  "$work/good.conf" >"$work/wrongname.conf"
grep -q wrong.example "$work/wrongname.conf" || fail "could not write wrongname.conf"
g3=gdtlsc$$
start_girder_node "$work/girder3.log" -sname "$g3" -setcookie "$cookie" -proto_dist inet_tls \
  -ssl_dist_optfile "$work/wrongname.conf"
node3_pid=$girder_node_pid
wait_girder_registered "$g3" "$node3_pid"
# tn is hidden: a visible node would sync global with g and g3, and
# global's connect_all would then connect g to g3 (g as the client, which
# has no reason to refuse).
out=$(erl_result -sname "tn$$" -hidden -setcookie "$cookie" "${tls[@]}" -noshell \
        -eval "P = rpc:call('$g@$host', girder, spawn_echo, []),
               {echo, '$g3@$host'} ! {P, hi}, timer:sleep(1500),
               io:format(\"result=~p~n\", [lists:member('$g@$host',
                                              rpc:call('$g3@$host', erlang, nodes, []))]),
               halt().")
[ "$out" = false ] || fail "g3 connected to g despite the host name: $out"
grep -q "connection to $g@$host: TLS handshake with 127.0.0.1:[0-9]* failed: peer certificate refused: hostname mismatch" \
  "$work/girder3.log" || fail "no host name refusal logged by $g3"
stop_girder_process "$node3_pid" TERM

# ---- the node still serves a good peer, and shuts down cleanly.
out=$(erl_result -sname "tg$$" -setcookie "$cookie" "${tls[@]}" -noshell \
        -eval "io:format(\"result=~p~n\", [{net_adm:ping('$g@$host'),
                                     rpc:call('$g@$host', girder, echo, [after_refusals])}]),
               halt().")
[ "$out" = "{pong,after_refusals}" ] || fail "after the refusals: $out"
kill -0 "$node_pid" || fail "girder node died"
stop_girder_process "$node_pid" TERM; rc=$?
[ "$rc" = 0 ] || fail "girder node exit status $rc"
stop_girder_process "$node2_pid" TERM; rc=$?
[ "$rc" = 0 ] || fail "girder node 2 exit status $rc"
echo "dist_tls: all checks passed"
