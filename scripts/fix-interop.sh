#!/usr/bin/env bash
# FIX interoperability check, outside CI: our FIX session (crates/kalshi/src/fix) against a real
# QuickFIX acceptor (PyPI `quickfix` 1.16.0, the C++ engine behind a Python binding) whose
# data dictionary adds the exchange's order-group messages (35=UOG / 35=UOH) and fields
# (20130-20132). The acceptor checks the signed Logon (96 RawData, RSA-PSS over
# SendingTime|A|MsgSeqNum|SenderCompID|TargetCompID, verified with openssl) and answers each
# UOG action the way the exchange documents it; `cargo run --example fix_probe` is the client.
#
# Needs python3 with venv, g++, the Python headers and openssl. The first run builds quickfix
# from source (about 9 minutes on 2 cores) into $QF_VENV (default
# ~/.cache/kalshi-riskd/quickfix-venv); later runs reuse it.
#
# Usage: scripts/fix-interop.sh     exits 0 when the logon, heartbeats (HeartBtInt $HEARTBEAT,
#                                   default 5 s) and every UOG action interoperate
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/kalshi-riskd
QF_VENV=${QF_VENV:-$CACHE/quickfix-venv}
SDIST=$CACHE/sdist/quickfix-1.16.0.tar.gz
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fix-interop.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

if [ ! -f "$SDIST" ]; then
  mkdir -p "$CACHE/sdist"
  python3 -m pip download --no-deps --no-binary=:all: quickfix==1.16.0 -d "$CACHE/sdist"
fi
if ! "$QF_VENV/bin/python" -c 'import quickfix' 2>/dev/null; then
  echo "building quickfix 1.16.0 into $QF_VENV (about 9 minutes)..."
  python3 -m venv "$QF_VENV"
  "$QF_VENV/bin/pip" install -q --upgrade pip wheel setuptools
  "$QF_VENV/bin/pip" install "$SDIST"
fi

# The data dictionaries from the sdist, with the order-group messages added.
mkdir -p "$WORK/spec"
tar -xzf "$SDIST" -C "$WORK" --wildcards '*/spec/FIXT11.xml' '*/spec/FIX50SP2.xml'
cp "$WORK"/quickfix-1.16.0/spec/FIXT11.xml "$WORK"/quickfix-1.16.0/spec/FIX50SP2.xml "$WORK/spec/"
"$QF_VENV/bin/python" - "$WORK/spec" <<'PY'
import sys, xml.etree.ElementTree as ET
spec = sys.argv[1]
for name in ["FIXT11.xml", "FIX50SP2.xml"]:
    path = f"{spec}/{name}"
    tree = ET.parse(path)
    root = tree.getroot()
    fields = root.find("fields")
    for f in fields.findall("field"):
        # MsgType is an enumeration in the application dictionary only (free text in FIXT11).
        if f.get("number") == "35" and f.find("value") is not None:
            for t, d in [("UOG", "ORDER_GROUP_REQUEST"), ("UOH", "ORDER_GROUP_RESPONSE")]:
                ET.SubElement(f, "value", enum=t, description=d)
    if name == "FIX50SP2.xml":
        for num, fname, ftype in [("20130", "OrderGroupID", "STRING"),
                                  ("20131", "OrderGroupAction", "INT"),
                                  ("20132", "OrderGroupContractsLimit", "INT")]:
            ET.SubElement(fields, "field", number=num, name=fname, type=ftype)
        messages = root.find("messages")
        uog = ET.SubElement(messages, "message", name="OrderGroupRequest", msgtype="UOG", msgcat="app")
        for fname, req in [("OrderGroupAction", "Y"), ("OrderGroupID", "N"),
                           ("OrderGroupContractsLimit", "N"), ("AllocAccount", "N"),
                           ("ExDestination", "N")]:
            ET.SubElement(uog, "field", name=fname, required=req)
        uoh = ET.SubElement(messages, "message", name="OrderGroupResponse", msgtype="UOH", msgcat="app")
        for fname, req in [("OrderGroupID", "Y"), ("OrderGroupContractsLimit", "N"), ("AllocAccount", "N")]:
            ET.SubElement(uoh, "field", name=fname, required=req)
    tree.write(path)
PY

# A throwaway API key.
KEY_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/key.pem" 2>/dev/null
chmod 600 "$WORK/key.pem"
openssl pkey -in "$WORK/key.pem" -pubout -out "$WORK/pub.pem"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat > "$WORK/acceptor.cfg" <<CFG
[DEFAULT]
ConnectionType=acceptor
SocketAcceptHost=127.0.0.1
SocketAcceptPort=$PORT
BeginString=FIXT.1.1
DefaultApplVerID=FIX.5.0SP2
TransportDataDictionary=$WORK/spec/FIXT11.xml
AppDataDictionary=$WORK/spec/FIX50SP2.xml
UseDataDictionary=Y
ValidateUserDefinedFields=Y
ResetOnLogon=Y
StartTime=00:00:00
EndTime=00:00:00
FileStorePath=$WORK/store
FileLogPath=$WORK/log
[SESSION]
SenderCompID=KalshiNR
TargetCompID=$KEY_ID
CFG

cat > "$WORK/acceptor.py" <<'PY'
import os, subprocess, sys, tempfile, threading, uuid, base64
import quickfix as fix

WORK = sys.argv[2]
SOH = "\x01"
groups = {}  # id -> [limit, subaccount, exchange_index, triggered]

def get(msg, tag):
    return msg.getField(tag) if msg.isSetField(tag) else None

def hget(msg, tag):
    h = msg.getHeader()
    return h.getField(tag) if h.isSetField(tag) else None

class Acceptor(fix.Application):
    def onCreate(self, s): pass
    def onLogon(self, s): print("acceptor: logon", s, flush=True)
    def onLogout(self, s): print("acceptor: logout", s, flush=True)
    def toAdmin(self, m, s): pass
    def toApp(self, m, s): pass
    def fromAdmin(self, m, s):
        if hget(m, 35) != "A":
            return
        for tag in (95, 96, 98, 108, 141, 1137):
            if not m.isSetField(tag):
                raise fix.RejectLogon(f"tag {tag} missing")
        prehash = SOH.join([hget(m, 52), "A", hget(m, 34), hget(m, 49), hget(m, 56)])
        with tempfile.NamedTemporaryFile(dir=WORK, delete=False) as d, \
             tempfile.NamedTemporaryFile(dir=WORK, delete=False) as sig:
            d.write(prehash.encode()); sig.write(base64.b64decode(get(m, 96)))
        ok = subprocess.run(["openssl", "dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss",
                             "-sigopt", "rsa_pss_saltlen:-1", "-verify", f"{WORK}/pub.pem",
                             "-signature", sig.name, d.name], capture_output=True).returncode == 0
        print(f"acceptor: Logon 1137={get(m, 1137)} 141={get(m, 141)} 95={get(m, 95)} signature "
              + ("verified" if ok else "INVALID"), flush=True)
        if not ok:
            raise fix.RejectLogon("invalid signature")
    def fromApp(self, m, s):
        if hget(m, 35) != "UOG":
            return
        action = int(get(m, 20131))
        gid, limit = get(m, 20130), get(m, 20132)
        sub, ex = int(get(m, 79) or 0), int(get(m, 100) or 0)
        seq = hget(m, 34)
        print(f"acceptor: UOG 20131={action} 20130={gid} 20132={limit} 79={get(m, 79)} 100={get(m, 100)}", flush=True)
        g = groups.get(gid) if gid else None
        if action != 1 and (g is None or g[1] != sub or g[2] != ex):
            r = fix.Message(); r.getHeader().setField(fix.MsgType("j"))
            r.setField(45, seq); r.setField(372, "UOG"); r.setField(380, "1")
            r.setField(58, "ORDER_GROUP_NOT_FOUND")
            fix.Session.sendToTarget(r, s); return
        if action == 1:
            gid = str(uuid.uuid4()); groups[gid] = [int(limit), sub, ex, False]
        elif action == 2: groups[gid][3] = False
        elif action == 3: del groups[gid]
        elif action == 4: groups[gid][3] = True
        elif action == 5: groups[gid][0] = int(limit)
        r = fix.Message(); r.getHeader().setField(fix.MsgType("UOH"))
        r.setField(20130, gid)
        if action in (1, 5): r.setField(20132, str(limit))
        r.setField(79, str(sub))
        fix.Session.sendToTarget(r, s)

settings = fix.SessionSettings(sys.argv[1])
app = Acceptor()
acceptor = fix.SocketAcceptor(app, fix.FileStoreFactory(settings), settings, fix.FileLogFactory(settings))
acceptor.start()
print("acceptor: listening", flush=True)
threading.Event().wait()
PY

"$QF_VENV/bin/python" "$WORK/acceptor.py" "$WORK/acceptor.cfg" "$WORK" > "$WORK/acceptor.out" 2>&1 &
for _ in $(seq 100); do grep -q listening "$WORK/acceptor.out" 2>/dev/null && break; sleep 0.1; done

set +e
RUST_LOG=${RUST_LOG:-info} cargo run -q --example fix_probe -- "tcp://127.0.0.1:$PORT" "$KEY_ID" "$WORK/key.pem" "${HEARTBEAT:-5}"
rc=$?
set -e
sleep 0.5
echo "--- QuickFIX acceptor"
cat "$WORK/acceptor.out"
echo "--- rejects and errors in QuickFIX's event log"
grep -h -i -E "reject|invalid|error" "$WORK"/log/*event*.log || echo "(none)"
echo "work directory: $WORK"
exit $rc
