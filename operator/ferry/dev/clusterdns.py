"""Cluster DNS for the local pod runner: what CoreDNS answers to a kubelet's ClusterFirst pods.

A small UDP DNS server (standard library only) runs inside the runner process and answers A queries
for the cluster domain from the API objects:

- ``<service>.<ns>.svc.cluster.local``: the IPs of the pods the Service's selector picks that are
  Ready and have a pod IP (all of them, ready or not, when ``publishNotReadyAddresses``), as a
  headless Service's A records. The local runner's Services have no endpoints (the API refuses
  loopback pod IPs in EndpointSlices) and no ClusterIP routing (no kube-proxy), so the client
  connects straight to a pod with the Service's ``port``: it must equal the ``targetPort``;
- ``<hostname>.<subdomain>.<ns>.svc.cluster.local``: a pod with that ``spec.hostname`` and
  ``spec.subdomain`` selected by the (headless) Service named ``<subdomain>`` (Indexed Jobs);
- any other name in the cluster domain is NXDOMAIN; a name that exists gets no records for other
  query types (AAAA included), as CoreDNS answers;
- everything else is forwarded to the nameservers of the host's ``/etc/resolv.conf`` (SERVFAIL when
  none answers, REFUSED when there is none), so pods still resolve external names.

Pods see it through their own ``/etc/resolv.conf`` (:func:`pod_resolv_conf`, the kubelet's rules for
``dnsPolicy`` and ``dnsConfig``). The server listens on port 53 (resolv.conf has no port) of the
first free address of 127.0.0.10-127.0.0.254, outside the pod IPs (127.1.0.1 and up), so that each
runner on a host gets its own. Not served: TCP, SRV/PTR records, ExternalName Services.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("ferry.runner.dns")

CLUSTER_DOMAIN = "cluster.local"
DNS_PORT = 53
TTL = 5  # seconds, as CoreDNS's kubernetes plugin
UDP_LIMIT = 512  # a reply without EDNS must fit in this

QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TYPE_A, TYPE_ANY, CLASS_IN = 1, 255, 1
_HEADER = struct.Struct("!6H")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label: namespaces, Services, pods


# --- wire format -------------------------------------------------------------------------------


class MalformedQuery(ValueError):
    pass


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    labels: tuple[str, ...]  # lower case
    qtype: int
    qclass: int
    question: bytes  # the question section as received, echoed in the reply

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def name(self) -> str:
        return ".".join(self.labels)


def parse_query(packet: bytes) -> Query:
    """A query with exactly one question (the only kind resolvers send)."""
    if len(packet) < _HEADER.size:
        raise MalformedQuery("shorter than a header")
    ident, flags, questions, *_ = _HEADER.unpack_from(packet)
    if flags & QR:
        raise MalformedQuery("a response, not a query")
    if questions != 1:
        raise MalformedQuery(f"{questions} questions")
    labels, offset = [], _HEADER.size
    while True:
        if offset >= len(packet):
            raise MalformedQuery("name runs past the packet")
        length = packet[offset]
        if length == 0:
            offset += 1
            break
        if length > 63:  # a compression pointer cannot point back into the header
            raise MalformedQuery("label longer than 63 bytes or compressed")
        labels.append(packet[offset + 1:offset + 1 + length].decode("latin-1").lower())
        offset += 1 + length
    if offset - _HEADER.size > 255 or offset + 4 > len(packet):
        raise MalformedQuery("name too long or question truncated")
    qtype, qclass = struct.unpack_from("!HH", packet, offset)
    return Query(ident, flags, tuple(labels), qtype, qclass, packet[_HEADER.size:offset + 4])


def encode_reply(query: Query, rcode: int, addresses: Sequence[str] = (), *,
                 authoritative: bool = False) -> bytes:
    """The reply with A records for ``addresses``: as many as fit in a plain UDP reply (a resolver
    would retry a truncated one over TCP, which is not served)."""
    room = (UDP_LIMIT - _HEADER.size - len(query.question)) // 16
    records = [struct.pack("!HHHIH", 0xC000 | _HEADER.size, TYPE_A, CLASS_IN, TTL, 4)
               + socket.inet_aton(address) for address in addresses[:room]]
    flags = QR | (query.flags & (0xF << 11)) | (query.flags & RD) | RA | rcode
    if authoritative:
        flags |= AA
    return _HEADER.pack(query.id, flags, 1, len(records), 0, 0) + query.question + b"".join(records)


def error_reply(packet: bytes, rcode: int) -> bytes:
    """An answer without records to whatever can be read of ``packet`` (b"" when nothing can)."""
    try:
        return encode_reply(parse_query(packet), rcode)
    except MalformedQuery:
        if len(packet) < _HEADER.size or packet[2] & 0x80:  # no header, or not a query: drop
            return b""
        ident, flags = struct.unpack_from("!HH", packet)
        return _HEADER.pack(ident, QR | (flags & (0xF << 11)) | (flags & RD) | RA | rcode, 0, 0, 0, 0)


# --- names -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceName:
    namespace: str
    service: str


@dataclass(frozen=True)
class PodName:
    namespace: str
    subdomain: str
    hostname: str


def in_domain(labels: tuple[str, ...], domain: str = CLUSTER_DOMAIN) -> bool:
    suffix = tuple(domain.split("."))
    return labels[-len(suffix):] == suffix


def cluster_name(labels: tuple[str, ...], domain: str = CLUSTER_DOMAIN
                 ) -> ServiceName | PodName | None:
    """What a name of the cluster domain designates; None for names that cannot exist."""
    rest = labels[:-len(domain.split("."))]
    if len(rest) not in (3, 4) or rest[-1] != "svc" or not all(_LABEL.match(p) for p in rest):
        return None
    if len(rest) == 3:
        return ServiceName(namespace=rest[1], service=rest[0])
    return PodName(namespace=rest[2], subdomain=rest[1], hostname=rest[0])


def selects(selector: dict | None, labels: dict | None) -> bool:
    """A Service's equality selector; one without a selector picks no pod (no managed endpoints)."""
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def endpoint_pods(service: dict, pods: list[dict]) -> list[dict]:
    """The pods a Service's endpoints would list: selected, with an IP, not finished, and Ready and
    not terminating unless the Service publishes not-ready addresses."""
    spec = service.get("spec") or {}
    every = bool(spec.get("publishNotReadyAddresses"))
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        if (not selects(spec.get("selector"), pod["metadata"].get("labels"))
                or not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed")):
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        if every or (ready and not pod["metadata"].get("deletionTimestamp")):
            found.append(pod)
    return found


def resolve(name: ServiceName | PodName, services: list[dict], pods: list[dict]) -> list[str] | None:
    """The A records of ``name`` from its namespace's Services and pods; None: no such name."""
    wanted = name.service if isinstance(name, ServiceName) else name.subdomain
    service = next((s for s in services if s["metadata"]["name"] == wanted), None)
    if service is None:
        return None
    selected = endpoint_pods(service, pods)
    if isinstance(name, PodName):
        selected = [p for p in selected if p["spec"].get("hostname") == name.hostname
                    and p["spec"].get("subdomain") == name.subdomain]
        if not selected:
            return None
    return sorted({p["status"]["podIP"] for p in selected}, key=ipaddress.ip_address)


def answer(packet: bytes, lookup: Callable[[ServiceName | PodName], list[str] | None],
           domain: str = CLUSTER_DOMAIN) -> bytes | None:
    """The reply to ``packet``; None when the name is not the cluster's and goes upstream, b"" when
    the packet is not worth a reply. ``lookup`` is :func:`resolve` over the name's namespace."""
    try:
        query = parse_query(packet)
    except MalformedQuery:
        return error_reply(packet, FORMERR)
    if query.opcode != 0:
        return encode_reply(query, NOTIMP)
    if not in_domain(query.labels, domain):
        return None
    if query.qclass != CLASS_IN:
        return encode_reply(query, REFUSED)
    name = cluster_name(query.labels, domain)
    try:
        addresses = lookup(name) if name else None
    except Exception as error:  # the apiserver is away: a resolver retries a SERVFAIL
        log.warning("cluster DNS lookup of %s failed: %s", query.name, error)
        return encode_reply(query, SERVFAIL)
    if addresses is None:
        return encode_reply(query, NXDOMAIN, authoritative=True)
    records = addresses if query.qtype in (TYPE_A, TYPE_ANY) else []
    return encode_reply(query, NOERROR, records, authoritative=True)


def forward(packet: bytes, upstreams: list[str], timeout: float = 2.0,
            port: int = DNS_PORT) -> bytes | None:
    """Ask each upstream nameserver in turn; the first answer with the query's id, or None."""
    ident = packet[:2]
    for upstream in upstreams:
        family = socket.AF_INET6 if ":" in upstream else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect((upstream, port))
                sock.send(packet)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    reply = sock.recv(65535)
                    if reply[:2] == ident:
                        return reply
            except OSError as error:
                log.debug("nameserver %s: %s", upstream, error)
    return None


# --- resolv.conf -------------------------------------------------------------------------------


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        conf = cls()
        for line in text.splitlines():
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            if words[0] == "nameserver" and len(words) > 1:
                conf.nameservers.append(words[1])
            elif words[0] in ("search", "domain"):  # the last of them wins, as in glibc
                conf.searches = words[1:]
            elif words[0] == "options":
                conf.options += words[1:]
        return conf

    def merge(self, dns_config: dict | None) -> ResolvConf:
        """Add a pod's ``dnsConfig`` the kubelet's way: nameservers and searches appended without
        duplicates, an option replaces one of the same name."""
        config = dns_config or {}
        options = {o.split(":", 1)[0]: o for o in self.options}
        for option in config.get("options") or []:
            value = option.get("value")
            options[option["name"]] = option["name"] + (f":{value}" if value is not None else "")
        return ResolvConf(_unique(self.nameservers + (config.get("nameservers") or [])),
                          _unique(self.searches + (config.get("searches") or [])),
                          list(options.values()))

    def render(self) -> str:
        lines = [f"nameserver {ns}" for ns in self.nameservers[:3]]  # glibc reads three at most
        lines += [f"search {' '.join(self.searches)}"] if self.searches else []
        lines += [f"options {' '.join(self.options)}"] if self.options else []
        return "".join(f"{line}\n" for line in lines)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def pod_resolv_conf(pod: dict, cluster_dns: str | None, host: str,
                    domain: str = CLUSTER_DOMAIN) -> str | None:
    """The pod's /etc/resolv.conf by its ``dnsPolicy``, or None when it keeps the host's file as it
    is. ``ClusterFirst`` (the default; ``Default`` for hostNetwork pods or when the runner has no
    cluster DNS) and ``ClusterFirstWithHostNet``: the cluster nameserver, the namespace's search
    path before the host's, ``ndots:5``; ``Default``: the host's; ``None``: ``dnsConfig`` alone."""
    spec = pod["spec"]
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not cluster_dns:
        policy = "Default"
    config = spec.get("dnsConfig")
    if policy == "Default" and not config:
        return None
    if policy == "None":
        base = ResolvConf()
    elif policy == "Default":
        base = ResolvConf.parse(host)
    else:
        namespace = pod["metadata"]["namespace"]
        base = ResolvConf([cluster_dns], _unique(
            [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *ResolvConf.parse(host).searches]),
            ["ndots:5"])
    return base.merge(config).render()


# --- the server --------------------------------------------------------------------------------


def listen_addresses() -> Iterator[str]:
    """Loopback addresses below the pods' (127.1.0.1 and up), skipping the usual local stubs."""
    for last in range(10, 255):
        if last != 53:  # systemd-resolved's stub
            yield f"127.0.0.{last}"


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        packet, sock = self.request
        reply = self.server.dns.reply(packet)
        if reply:
            sock.sendto(reply, self.client_address)


class _Server(socketserver.ThreadingUDPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False  # a second runner on the host must see the address taken
    max_packet_size = 65535


class ClusterDNS:
    """Answers from Services and pods listed through ``core`` (cached per namespace for
    ``cache_seconds``), forwards the rest to the host's nameservers."""

    def __init__(self, core, host_resolv_conf: str, domain: str = CLUSTER_DOMAIN,
                 cache_seconds: float = 1.0) -> None:
        self.core, self.domain, self.cache_seconds = core, domain, cache_seconds
        self.upstreams = ResolvConf.parse(host_resolv_conf).nameservers
        self.address: str | None = None
        self._cache: dict[str, tuple[float, list[dict], list[dict]]] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None

    def objects(self, namespace: str) -> tuple[list[dict], list[dict]]:
        with self._lock:
            cached = self._cache.get(namespace)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1], cached[2]
        services = self._items(self.core.list_namespaced_service, namespace)
        pods = self._items(self.core.list_namespaced_pod, namespace)
        with self._lock:
            self._cache[namespace] = (time.monotonic(), services, pods)
        return services, pods

    @staticmethod
    def _items(list_call, namespace: str) -> list[dict]:
        """The raw JSON items (the client's models would be converted back to dicts anyway)."""
        return json.loads(list_call(namespace, _preload_content=False, _request_timeout=3).data)["items"]

    def lookup(self, name: ServiceName | PodName) -> list[str] | None:
        addresses = resolve(name, *self.objects(name.namespace))
        if addresses:  # spread clients over the pods, as CoreDNS's loadbalance plugin
            addresses = random.sample(addresses, len(addresses))
        return addresses

    def reply(self, packet: bytes) -> bytes:
        reply = answer(packet, self.lookup, self.domain)
        if reply is not None:
            return reply
        if not self.upstreams:
            return error_reply(packet, REFUSED)
        return forward(packet, self.upstreams) or error_reply(packet, SERVFAIL)

    def serve(self, addresses: Iterable[str] | None = None, port: int = DNS_PORT) -> str | None:
        """Listen on the first free address and answer in the background; the address, or None
        when no address can be had (port 53 needs root)."""
        for address in addresses or listen_addresses():
            try:
                server = _Server((address, port), _Handler)
            except PermissionError as error:
                log.warning("no cluster DNS: cannot listen on port %s (%s)", port, error)
                return None
            except OSError:  # taken, by another runner for instance
                continue
            server.dns = self
            self._server, self.address = server, address
            self.upstreams = [u for u in self.upstreams if u != address]
            threading.Thread(target=server.serve_forever, name="cluster-dns", daemon=True).start()
            log.info("cluster DNS on %s:%s (upstream: %s)", address, port,
                     ", ".join(self.upstreams) or "none")
            return address
        log.warning("no cluster DNS: no free address to listen on")
        return None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
