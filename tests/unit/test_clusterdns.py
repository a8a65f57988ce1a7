"""The local runner's cluster DNS: wire format, names → pod IPs, forwarding, pods' resolv.conf."""

from __future__ import annotations

import json
import socket
import struct
import threading

import pytest

from ferry.dev.clusterdns import (
    NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, ClusterDNS, MalformedQuery, PodName,
    ResolvConf, ServiceName, answer, cluster_name, encode_reply, forward, in_domain, parse_query,
    pod_resolv_conf, resolve)

# dig-style query for "example.com" A IN, id 0x1234, recursion desired
EXAMPLE_QUERY = bytes.fromhex("12340100000100000000000007" "6578616d706c65" "03636f6d00" "00010001")
A, AAAA, TXT = 1, 28, 16


def query(name: str, qtype: int = A, ident: int = 0xBEEF, flags: int = 0x0100,
          qclass: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".") if p)
    return struct.pack("!6H", ident, flags, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        "!HH", qtype, qclass)


def decode(reply: bytes) -> dict:
    """Header fields and the A records of a reply whose answers point back at the question."""
    ident, flags, questions, count, _, _ = struct.unpack_from("!6H", reply)
    offset = 12
    if questions:
        while reply[offset]:
            offset += reply[offset] + 1
        offset += 5
    addresses = []
    for _ in range(count):
        pointer, rtype, rclass, ttl, length = struct.unpack_from("!HHHIH", reply, offset)
        assert (pointer, rtype, rclass, length) == (0xC00C, A, 1, 4)
        addresses.append(socket.inet_ntoa(reply[offset + 12:offset + 16]))
        offset += 16
    assert offset == len(reply)
    return {"id": ident, "rcode": flags & 0xF, "qr": bool(flags & 0x8000),
            "aa": bool(flags & 0x0400), "rd": bool(flags & 0x0100), "ra": bool(flags & 0x0080),
            "questions": questions, "addresses": addresses}


def pod(name, ip="127.1.0.5", labels=None, ready=True, phase="Running", **spec):
    meta = {"name": name, "namespace": "team", "labels": {"app": "web"} if labels is None else labels}
    if spec.pop("terminating", False):
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "spec": spec, "status": status}


def service(name, selector=None, **spec):
    return {"metadata": {"name": name, "namespace": "team"},
            "spec": {"selector": {"app": "web"} if selector is None else selector, **spec}}


# --- wire format -------------------------------------------------------------------------------


def test_a_handcrafted_query_is_parsed_and_its_question_echoed():
    parsed = parse_query(EXAMPLE_QUERY)
    assert (parsed.id, parsed.labels, parsed.qtype, parsed.qclass, parsed.opcode) == (
        0x1234, ("example", "com"), A, 1, 0)
    assert parsed.question == EXAMPLE_QUERY[12:]
    assert parse_query(query("Web.TEAM.svc.Cluster.Local")).labels == (
        "web", "team", "svc", "cluster", "local")


def test_a_reply_is_encoded_byte_for_byte():
    reply = encode_reply(parse_query(EXAMPLE_QUERY), NOERROR, ["127.1.2.3"], authoritative=True)
    assert reply == bytes.fromhex(
        "1234" "8580" "0001" "0001" "0000" "0000"  # QR AA RD RA, one question, one answer
        + EXAMPLE_QUERY[12:].hex()
        + "c00c" "0001" "0001" "00000005" "0004" "7f010203")


@pytest.mark.parametrize("packet", [
    b"\x12\x34\x01", query("a.b")[:-2], EXAMPLE_QUERY[:4] + b"\x00\x02" + EXAMPLE_QUERY[6:],
    EXAMPLE_QUERY[:2] + b"\x81\x80" + EXAMPLE_QUERY[4:], EXAMPLE_QUERY[:12] + b"\xc0\x0c\x00\x01\x00\x01",
])
def test_malformed_packets_are_refused(packet):
    with pytest.raises(MalformedQuery):
        parse_query(packet)


def test_malformed_queries_get_formerr_and_responses_or_scraps_nothing():
    two_questions = EXAMPLE_QUERY[:4] + b"\x00\x02" + EXAMPLE_QUERY[6:]
    assert decode(answer(two_questions, lookup=None)) == {
        "id": 0x1234, "rcode": FORMERR, "qr": True, "aa": False, "rd": True, "ra": True,
        "questions": 0, "addresses": []}
    assert answer(EXAMPLE_QUERY[:2] + b"\x81\x80" + EXAMPLE_QUERY[4:], lookup=None) == b""
    assert answer(b"\x12", lookup=None) == b""


def test_only_as_many_records_as_fit_in_a_plain_udp_reply():
    addresses = [f"127.1.0.{n}" for n in range(1, 101)]
    reply = encode_reply(parse_query(query("many.team.svc.cluster.local")), NOERROR, addresses)
    assert len(reply) <= 512
    assert decode(reply)["addresses"] == addresses[:len(decode(reply)["addresses"])]
    assert len(decode(reply)["addresses"]) > 20


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,expected", [
    ("web.team.svc.cluster.local", ServiceName("team", "web")),
    ("ddp-0.ddp.team.svc.cluster.local", PodName("team", "ddp", "ddp-0")),
    ("web.team.svc.cluster.local.team.svc.cluster.local", None),  # the search path's tries
    ("web.team.pod.cluster.local", None), ("team.svc.cluster.local", None),
    ("cluster.local", None), ("we_b.team.svc.cluster.local", None),
])
def test_cluster_names(name, expected):
    assert cluster_name(tuple(name.split("."))) == expected


@pytest.mark.parametrize("name,ours", [
    ("web.team.svc.cluster.local", True), ("cluster.local", True), ("pypi.org", False),
    ("local", False), ("", False), ("cluster.local.example.com", False),
])
def test_only_the_cluster_domain_is_answered_the_rest_is_forwarded(name, ours):
    assert in_domain(tuple(p for p in name.split(".") if p)) is ours
    reply = answer(query(name), lambda _: [])
    assert (reply is not None) is ours


def test_a_service_resolves_to_its_ready_selected_pods():
    pods = [pod("a", "127.1.0.9"), pod("b", "127.1.0.10"), pod("late", "127.1.0.11", ready=False),
            pod("going", "127.1.0.12", terminating=True), pod("done", "127.1.0.13", phase="Succeeded"),
            pod("noip", None), pod("other", "127.1.0.14", labels={"app": "db"})]
    assert resolve(ServiceName("team", "web"), [service("web")], pods) == ["127.1.0.9", "127.1.0.10"]


def test_not_ready_addresses_are_published_when_the_service_asks():
    pods = [pod("a", "127.1.0.9", ready=False), pod("b", "127.1.0.8")]
    assert resolve(ServiceName("team", "web"),
                   [service("web", publishNotReadyAddresses=True)], pods) == ["127.1.0.8", "127.1.0.9"]


def test_a_service_without_ready_pods_or_selector_exists_without_records():
    assert resolve(ServiceName("team", "web"), [service("web")], [pod("a", ready=False)]) == []
    assert resolve(ServiceName("team", "ext"), [service("ext", selector={})], [pod("a")]) == []
    assert resolve(ServiceName("team", "nope"), [service("web")], [pod("a")]) is None


def test_pod_hostname_under_its_headless_service():
    headless = service("ddp", selector={"job": "j"}, clusterIP="None",
                       publishNotReadyAddresses=True)
    pods = [pod(f"j-{i}-x", f"127.1.0.{i + 1}", labels={"job": "j"}, ready=False,
                hostname=f"j-{i}", subdomain="ddp") for i in range(2)]
    assert resolve(PodName("team", "ddp", "j-1"), [headless], pods) == ["127.1.0.2"]
    assert resolve(PodName("team", "ddp", "j-7"), [headless], pods) is None
    assert resolve(PodName("team", "other", "j-1"), [headless], pods) is None
    elsewhere = [dict(p, spec={"hostname": "j-1", "subdomain": "other"}) for p in pods]
    assert resolve(PodName("team", "ddp", "j-1"), [headless], elsewhere) is None


def test_answers_for_cluster_names():
    def lookup(name):
        return {ServiceName("team", "web"): ["127.1.0.9", "127.1.0.10"],
                ServiceName("team", "idle"): []}.get(name)

    found = decode(answer(query("web.team.svc.cluster.local", ident=7), lookup))
    assert found == {"id": 7, "rcode": NOERROR, "qr": True, "aa": True, "rd": True, "ra": True,
                     "questions": 1, "addresses": ["127.1.0.9", "127.1.0.10"]}
    for qtype in (AAAA, TXT):  # the name exists: no records of that type, not NXDOMAIN
        assert decode(answer(query("web.team.svc.cluster.local", qtype), lookup))[
            "rcode"] == NOERROR
        assert decode(answer(query("web.team.svc.cluster.local", qtype), lookup))[
            "addresses"] == []
    assert decode(answer(query("idle.team.svc.cluster.local"), lookup))["addresses"] == []
    missing = decode(answer(query("gone.team.svc.cluster.local"), lookup))
    assert (missing["rcode"], missing["aa"]) == (NXDOMAIN, True)
    assert decode(answer(query("web.team.svc.cluster.local.svc.cluster.local"), None))[
        "rcode"] == NXDOMAIN


def test_failed_lookups_unsupported_opcodes_and_classes():
    def broken(_):
        raise ConnectionError("apiserver away")

    assert decode(answer(query("web.team.svc.cluster.local"), broken))["rcode"] == SERVFAIL
    notify = query("web.team.svc.cluster.local", flags=4 << 11)
    assert decode(answer(notify, broken))["rcode"] == NOTIMP
    chaos = query("web.team.svc.cluster.local", qclass=3)
    assert decode(answer(chaos, broken))["rcode"] == REFUSED


# --- forwarding and the server -----------------------------------------------------------------


class FakeCore:
    """list_namespaced_* as the client returns them unparsed (``_preload_content=False``)."""

    def __init__(self, services, pods):
        self.objects = {"service": services, "pod": pods}
        self.calls = []

    def _list(self, kind, namespace):
        self.calls.append((kind, namespace))
        items = self.objects[kind] if namespace == "team" else []
        return type("Response", (), {"data": json.dumps({"items": items}).encode()})()

    def list_namespaced_service(self, namespace, **_):
        return self._list("service", namespace)

    def list_namespaced_pod(self, namespace, **_):
        return self._list("pod", namespace)


@pytest.fixture
def upstream():
    """A nameserver on a free loopback port answering every query with one address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    seen = []

    def serve():
        while True:
            try:
                packet, peer = sock.recvfrom(4096)
            except OSError:
                return
            seen.append(packet)
            sock.sendto(encode_reply(parse_query(packet), NOERROR, ["192.0.2.7"]), peer)

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1], seen
    sock.close()


def test_forwarding_returns_the_upstream_answer_or_none(upstream):
    port, seen = upstream
    packet = query("pypi.org", ident=99)
    assert decode(forward(packet, ["127.0.0.1"], port=port))["addresses"] == ["192.0.2.7"]
    assert seen == [packet]
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.bind(("127.0.0.1", 0))
    with quiet:
        assert forward(packet, ["127.0.0.1"], timeout=0.2, port=quiet.getsockname()[1]) is None


def test_without_a_host_nameserver_other_names_are_refused():
    dns = ClusterDNS(FakeCore([], []), "# no nameserver\nsearch corp.example\n")
    assert decode(dns.reply(query("pypi.org")))["rcode"] == REFUSED


def test_the_server_takes_the_next_address_when_one_is_taken_and_answers_from_the_api():
    core = FakeCore([service("web")], [pod("a", "127.1.0.9"), pod("b", "127.1.0.10")])
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    dns = ClusterDNS(core, "nameserver 127.0.0.2\nnameserver 192.0.2.53\n")
    try:
        assert dns.serve(["127.0.0.1", "127.0.0.2"], port=port) == "127.0.0.2"
        assert dns.upstreams == ["192.0.2.53"], "never forwards to itself"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            for _ in range(2):
                client.sendto(query("web.team.svc.cluster.local"), ("127.0.0.2", port))
                found = decode(client.recv(512))
                assert sorted(found["addresses"]) == ["127.1.0.10", "127.1.0.9"]
        assert core.calls == [("service", "team"), ("pod", "team")], "listed once, then cached"
    finally:
        dns.stop()
        taken.close()


# --- resolv.conf -------------------------------------------------------------------------------

HOST = "# generated\nnameserver 10.0.0.53\nnameserver 10.0.1.53\nsearch corp.example\n" \
       "options timeout:2 edns0\n"
CLUSTER = ("nameserver 127.0.0.10\n"
           "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
           "options ndots:5\n")


def pod_with(**spec):
    return {"metadata": {"name": "p", "namespace": "team"}, "spec": spec}


def test_the_host_resolv_conf_is_read_like_glibc():
    conf = ResolvConf.parse(HOST + "domain other.example ; a comment\n")
    assert conf.nameservers == ["10.0.0.53", "10.0.1.53"]
    assert conf.searches == ["other.example"]
    assert conf.options == ["timeout:2", "edns0"]


@pytest.mark.parametrize("spec,expected", [
    ({}, CLUSTER),
    ({"dnsPolicy": "ClusterFirst"}, CLUSTER),
    ({"hostNetwork": True}, None),
    ({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}, CLUSTER),
    ({"dnsPolicy": "Default"}, None),
    ({"dnsPolicy": "Default", "dnsConfig": {"searches": ["extra.example"]}},
     "nameserver 10.0.0.53\nnameserver 10.0.1.53\nsearch corp.example extra.example\n"
     "options timeout:2 edns0\n"),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"],
                                         "options": [{"name": "ndots", "value": "1"}]}},
     "nameserver 192.0.2.1\noptions ndots:1\n"),
    ({"dnsConfig": {"nameservers": ["192.0.2.1"], "searches": ["svc.cluster.local", "x.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}},
     "nameserver 127.0.0.10\nnameserver 192.0.2.1\n"
     "search team.svc.cluster.local svc.cluster.local cluster.local corp.example x.example\n"
     "options ndots:2 edns0\n"),
])
def test_a_pods_resolv_conf_follows_its_dns_policy(spec, expected):
    assert pod_resolv_conf(pod_with(**spec), "127.0.0.10", HOST) == expected


def test_without_cluster_dns_pods_keep_the_host_resolv_conf():
    assert pod_resolv_conf(pod_with(), None, HOST) is None
