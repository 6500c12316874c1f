"""mDNS peers for the LAN tests, built on python3-zeroconf (an implementation independent of
bonjour-service). Each mode prints one JSON object per line.

  browse           resolve every _modelferry._tcp service as it comes and goes
                   ({"event": "added"|"updated"|"removed", "name", "port", "server", "addresses", "txt"})
  sniff            every mDNS response seen on the LAN, records decoded
                   ({"source", "records": [{"name", "type", "ttl", "data"}]})
  query NAME HOST [legacy]
                   one query asking PTR, SRV, TXT and A at once (QU set on the last three), as
                   an ESP-IDF device asks, from port 5353 (or, with legacy, from another port
                   as a plain DNS resolver does); prints the first response that answers it
                   ({"source", "id", "records": [...], "answers": n})
  hostile NAME     malformed packets, a flood of queries and a spoofed service named NAME
                   (the instance label), then {"done": true, ...counts}
"""
import json
import random
import socket
import struct
import sys
import time

from zeroconf import (DNSAddress, DNSIncoming, DNSOutgoing, DNSPointer, DNSQuestion, DNSService, DNSText,
                      ServiceBrowser, ServiceStateChange, Zeroconf, const)

TYPE = "_modelferry._tcp.local."
GROUP = "224.0.0.251"
PORT = 5353


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def browse():
    zc = Zeroconf()

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Removed:
            emit({"event": "removed", "name": name})
            return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is None:
            emit({"event": "unresolved", "name": name})
            return
        txt = {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()}
        emit({
            "event": "added" if state_change is ServiceStateChange.Added else "updated",
            "name": name, "port": info.port, "server": info.server,
            "addresses": info.parsed_addresses(), "txt": txt,
        })

    ServiceBrowser(zc, TYPE, handlers=[on_change])
    emit({"event": "ready"})
    try:
        while True:
            time.sleep(1)
    finally:
        zc.close()


def record_json(record):
    data = None
    if isinstance(record, DNSAddress):
        family = socket.AF_INET6 if len(record.address) == 16 else socket.AF_INET
        data = socket.inet_ntop(family, record.address)
    elif isinstance(record, DNSService):
        data = {"port": record.port, "target": record.server}
    elif isinstance(record, DNSText):
        data = record.text.decode("latin1")
    elif isinstance(record, DNSPointer):
        data = record.alias
    return {"name": record.name, "type": const._TYPES.get(record.type, str(record.type)), "ttl": record.ttl, "data": data}


def listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", PORT))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("0.0.0.0")))
    return sock


def sniff():
    sock = listening_socket()
    emit({"event": "ready"})
    while True:
        data, source = sock.recvfrom(9000)
        try:
            packet = DNSIncoming(data)
        except Exception:  # noqa: BLE001 - a sniffer reports what it can parse
            continue
        if not packet.is_response():
            continue
        emit({"source": source[0], "at": time.time(), "records": [record_json(r) for r in packet.answers]})


def query(instance, host, legacy):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    if legacy:
        sock.bind(("", 0))
    else:
        sock = listening_socket()
    name = f"{instance}.{TYPE}"
    out = DNSOutgoing(const._FLAGS_QR_QUERY, multicast=not legacy, id_=0x4d46 if legacy else 0)
    out.add_question(DNSQuestion(TYPE, const._TYPE_PTR, const._CLASS_IN))
    for qname, qtype in [(name, const._TYPE_SRV), (name, const._TYPE_TXT), (f"{host}.local.", const._TYPE_A)]:
        question = DNSQuestion(qname, qtype, const._CLASS_IN)
        question.unicast = not legacy
        out.add_question(question)
    sock.sendto(out.packets()[0], (GROUP, PORT))
    sock.settimeout(10)
    while True:
        data, source = sock.recvfrom(9000)
        try:
            packet = DNSIncoming(data)
        except Exception:  # noqa: BLE001
            continue
        if not packet.is_response() or not any(r.name.lower() == name.lower() for r in packet.answers):
            continue
        emit({"source": source[0], "id": packet.id, "answers": packet.num_answers,
              "records": [record_json(r) for r in packet.answers]})
        return


def txt(entries):
    return b"".join(bytes([len(e)]) + e.encode() for e in entries)


def hostile(instance):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", PORT))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    counts = {"malformed": 0, "queries": 0, "spoofed": 0}

    def send(data):
        sock.sendto(data, (GROUP, PORT))

    # Malformed: random bytes, a header promising records that are not there, a name whose
    # compression pointer points at itself, an over-long label, a truncated answer.
    rng = random.Random(6)
    header = struct.pack("!HHHHHH", 0, 0x8400, 0, 50, 0, 0)
    loop = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x0c\x00\x01"
    long_label = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 200 + b"\x00\x00\x0c\x00\x01"
    truncated = struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\x0b_modelferry\x04_tcp\x05local\x00\x00\x0c\x00\x01\x00\x00\x11\x94\x00\xff"
    for data in [header, loop, long_label, truncated, b"", b"\x00"]:
        send(data)
        counts["malformed"] += 1
    for _ in range(200):
        send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600))))
        counts["malformed"] += 1

    # A flood of queries, each wanting the full answer.
    query = DNSOutgoing(const._FLAGS_QR_QUERY)
    query.add_question(DNSQuestion(TYPE, const._TYPE_PTR, const._CLASS_IN))
    query.add_question(DNSQuestion(f"{instance}.{TYPE}", const._TYPE_ANY, const._CLASS_IN))
    flood = query.packets()[0]
    for _ in range(3000):
        send(flood)
        counts["queries"] += 1

    # A spoofed service under the gateway's own instance name, pointing somewhere else.
    name = f"{instance}.{TYPE}"
    spoof = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
    spoof.add_answer_at_time(DNSPointer(TYPE, const._TYPE_PTR, const._CLASS_IN, 4500, name), 0)
    spoof.add_answer_at_time(DNSService(name, const._TYPE_SRV, const._CLASS_IN | const._CLASS_UNIQUE, 120, 0, 0, 1, "evil.local."), 0)
    spoof.add_answer_at_time(DNSText(name, const._TYPE_TXT, const._CLASS_IN | const._CLASS_UNIQUE, 4500, txt(["txtvers=1", "id=spoof", "prio=0"])), 0)
    spoof.add_answer_at_time(DNSAddress("evil.local.", const._TYPE_A, const._CLASS_IN | const._CLASS_UNIQUE, 120, socket.inet_aton("198.18.0.250")), 0)
    for _ in range(20):
        send(spoof.packets()[0])
        counts["spoofed"] += 1
        time.sleep(0.05)
    emit({"done": True, **counts})


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "browse":
        browse()
    elif mode == "sniff":
        sniff()
    elif mode == "query" and len(sys.argv) > 3:
        query(sys.argv[2], sys.argv[3], sys.argv[4:] == ["legacy"])
    elif mode == "hostile" and len(sys.argv) > 2:
        hostile(sys.argv[2])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
