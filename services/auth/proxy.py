"""Identity from an authenticating reverse proxy (oauth2-proxy style headers), believed only when the
connection comes from one of the proxy's addresses (``MLOPS_TRUSTED_PROXIES``): anyone else could set the
same headers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from services.auth.claims import Principal
from services.auth.roles import groups_from, roles_for
from services.errors import Invalid, PermissionDenied
from services.identity import Actor

SOURCE = "authenticating proxy"
Network = IPv4Network | IPv6Network


def parse_trusted_proxies(text: str, *, setting: str = "MLOPS_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.7, fd00::/8"`` -> networks. A host part in a network (10.1.2.3/8) and a
    network that is everyone (0.0.0.0/0, ::/0) are refused."""
    out: list[Network] = []
    for chunk in str(text or "").split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        try:
            net = ip_network(chunk, strict=True)
        except ValueError as exc:
            raise Invalid(f"{setting}: {chunk!r} is not an IP address or CIDR network ({exc})",
                          source="settings") from exc
        if net.prefixlen == 0:
            raise Invalid(f"{setting}: {chunk!r} trusts every address, so anyone could send the identity headers",
                          source="settings")
        out.append(net)
    if not out:
        raise Invalid(f"MLOPS_AUTH_MODE=proxy needs {setting}: the addresses of the authenticating proxy "
                      "(IPs or CIDR networks, comma-separated)", source="settings")
    return tuple(out)


@dataclass(frozen=True)
class ProxyHeaders:
    """Which headers carry what (oauth2-proxy's names by default)."""

    user: str = "X-Forwarded-User"
    email: str = "X-Forwarded-Email"
    groups: str = "X-Forwarded-Groups"
    name: str = "X-Forwarded-Preferred-Username"


def is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    if not peer:
        return False
    try:
        ip = ip_address(peer.split("%", 1)[0])  # an IPv6 zone id is not part of the address
    except ValueError:
        return False
    if getattr(ip, "ipv4_mapped", None) is not None:  # ::ffff:10.0.0.5 is 10.0.0.5
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in trusted)


def _one(headers: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The header's single value (names are case-insensitive). Sent twice is refused: one copy may be the
    client's own."""
    values = [v for k, vs in headers.items() if k.lower() == name.lower() for v in vs]
    if len(values) > 1:
        raise PermissionDenied(f"the {name} header was sent {len(values)} times; the proxy must set it once",
                               source=SOURCE)
    value = values[0].strip() if values else ""
    if any(ord(ch) < 32 for ch in value):
        raise PermissionDenied(f"the {name} header holds control characters", source=SOURCE)
    return value or None


def principal_from_headers(headers: Mapping[str, Sequence[str]], peer: str | None, *, trusted: Sequence[Network],
                           names: ProxyHeaders, role_map: Mapping[str, tuple[str, ...]],
                           default_role: str = "viewer") -> Principal:
    """Who the proxy says this is. ``headers``: every header name with all its values; ``peer``: the address
    the connection came from (None: unknown). Refused (PermissionDenied) when the peer is not a trusted proxy or
    the user header is missing."""
    if not peer:
        raise PermissionDenied("cannot tell which address this connection comes from, so it cannot be trusted as "
                               "the authenticating proxy", source=SOURCE)
    if not is_trusted(peer, trusted):
        raise PermissionDenied(f"connections from {peer} are not accepted: only the authenticating proxy may "
                               "connect (MLOPS_TRUSTED_PROXIES)", source=SOURCE)
    user = _one(headers, names.user)
    if not user:
        raise PermissionDenied(f"no {names.user} header: sign in through the authenticating proxy", source=SOURCE)
    email = _one(headers, names.email)
    groups = groups_from(_one(headers, names.groups) or "")
    roles, mapped = roles_for(groups, role_map, default_role)
    shown = _one(headers, names.name) or email or user
    return Principal(Actor(shown[:255], roles, authenticated_by="proxy", subject_id=user[:255]), email=email,
                     groups=groups, mapped=mapped)
