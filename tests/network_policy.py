"""A NetworkPolicy evaluator for tests, and the Zero to JupyterHub chart's policies as its values render them.

Standard semantics (networking.k8s.io/v1): a pod is isolated for ingress
(egress) when any policy in its namespace selects it with that policyType;
a connection from A to B on a port is allowed when A may send it (A not
isolated for egress, or a rule of a policy selecting A lets it go to B) and B
may receive it (B not isolated for ingress, or a rule of a policy selecting B
admits it from A). A rule matches a peer by podSelector (in the policy's
namespace), namespaceSelector (alone: every pod there), both (AND), or
ipBlock (by the pod's IP); a rule without ``from``/``to`` matches every peer,
without ``ports`` every port. Named ports resolve against the destination
pod's container ports.

:func:`z2jh_policies` follows the chart's templates at 4.4.0
(``templates/{hub,proxy,singleuser}/netpol.yaml`` and
``_helpers-netpol.tpl``) for the values that decide them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    """A pod as policies see it: namespace, labels, IP, named container ports."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ip: str
    ports: Mapping[str, int] = field(default_factory=dict)


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector matches ``labels`` (``{}`` matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], _namespace_labels(other.namespace)):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels) if "podSelector" in peer else True


def _port_matches(ports: list[Mapping[str, Any]] | None, destination: Pod, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        number = destination.ports.get(wanted) if isinstance(wanted, str) else int(wanted)
        if number is None:
            continue
        if number <= port <= int(entry.get("endPort", number)):
            return True
    return False


def _selecting(policies: Iterable[Mapping[str, Any]], pod: Pod, kind: str) -> list[Mapping[str, Any]]:
    chosen = []
    for policy in policies:
        spec = policy["spec"]
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
        namespace = policy["metadata"].get("namespace", "")
        if kind in types and namespace == pod.namespace and selects(spec.get("podSelector"), pod.labels):
            chosen.append(policy)
    return chosen


def allowed(policies: list[Mapping[str, Any]], source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
    """Whether ``source`` may open a connection to ``destination`` on ``port``."""
    egress = _selecting(policies, source, "Egress")
    may_send = not egress or any(
        (not rule.get("to") or any(_peer_matches(p, policy["metadata"]["namespace"], destination) for p in rule["to"]))
        and _port_matches(rule.get("ports"), destination, port, protocol)
        for policy in egress
        for rule in policy["spec"].get("egress") or []
    )
    ingress = _selecting(policies, destination, "Ingress")
    may_receive = not ingress or any(
        (not rule.get("from") or any(_peer_matches(p, policy["metadata"]["namespace"], source) for p in rule["from"]))
        and _port_matches(rule.get("ports"), destination, port, protocol)
        for policy in ingress
        for rule in policy["spec"].get("ingress") or []
    )
    return may_send and may_receive


# --- the Zero to JupyterHub chart's policies ----------------------------------------

PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def _match_labels(release: str, component: str) -> dict[str, str]:
    return {"app": "jupyterhub", "release": release, "component": component}


def _egress_allow_rules(netpol: Mapping[str, Any], cloud_metadata_ip: str) -> list[dict[str, Any]]:
    """``jupyterhub.networkPolicy.renderEgressRules``: the egressAllowRules flags, then ``egress``."""
    allow = netpol.get("egressAllowRules") or {}
    rules: list[dict[str, Any]] = []
    dns_to: list[dict[str, Any]] = []
    if allow.get("dnsPortsCloudMetadataServer"):
        dns_to.append({"ipBlock": {"cidr": f"{cloud_metadata_ip}/32"}})
    if allow.get("dnsPortsKubeSystemNamespace"):
        dns_to.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}})
    if allow.get("dnsPortsPrivateIPs"):
        dns_to.extend({"ipBlock": {"cidr": cidr}} for cidr in PRIVATE)
    if dns_to:
        rules.append({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "to": dns_to})
    if allow.get("nonPrivateIPs"):
        rules.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [*PRIVATE, f"{cloud_metadata_ip}/32"]}}]})
    if allow.get("privateIPs"):
        rules.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in PRIVATE]})
    if allow.get("cloudMetadataServer"):
        rules.append({"to": [{"ipBlock": {"cidr": f"{cloud_metadata_ip}/32"}}]})
    rules.extend(netpol.get("egress") or [])
    return rules


def _labelled_from(label: str, inter_namespace: bool) -> list[dict[str, Any]]:
    peer: dict[str, Any] = {"podSelector": {"matchLabels": {label: "true"}}}
    if not inter_namespace:
        return [peer]
    return [{**peer, "namespaceSelector": {"matchLabels": {}}}, {"namespaceSelector": {"matchLabels": {label: "true"}}}]


def _policy(name: str, namespace: str, selector: dict[str, str], ingress: list, egress: list) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def z2jh_policies(values: Mapping[str, Any], release: str, namespace: str) -> list[dict[str, Any]]:
    """The hub, proxy and singleuser NetworkPolicies the chart renders for ``values`` (merged over its defaults)."""
    metadata_ip = values["singleuser"]["cloudMetadata"]["ip"]
    policies = []
    hub = values["hub"]["networkPolicy"]
    if hub["enabled"]:
        ingress = (
            [{"ports": [{"port": p} for p in hub["allowedIngressPorts"]]}] if hub.get("allowedIngressPorts") else []
        )
        accept = hub.get("interNamespaceAccessLabels") == "accept"
        ingress.append(
            {"ports": [{"port": "http"}], "from": _labelled_from("hub.jupyter.org/network-access-hub", accept)}
        )
        ingress.extend(hub.get("ingress") or [])
        egress = [
            {"to": [{"podSelector": {"matchLabels": _match_labels(release, "proxy")}}], "ports": [{"port": 8001}]},
            {
                "to": [{"podSelector": {"matchLabels": _match_labels(release, "singleuser-server")}}],
                "ports": [{"port": 8888}],
            },
            *_egress_allow_rules(hub, metadata_ip),
        ]
        policies.append(_policy("hub", namespace, _match_labels(release, "hub"), ingress, egress))
    proxy = values["proxy"]["chp"]["networkPolicy"]
    if proxy["enabled"]:
        accept = proxy.get("interNamespaceAccessLabels") == "accept"
        ingress = (
            [{"ports": [{"port": p} for p in proxy["allowedIngressPorts"]]}] if proxy.get("allowedIngressPorts") else []
        )
        ingress += [
            {"ports": [{"port": "http"}], "from": _labelled_from("hub.jupyter.org/network-access-proxy-http", accept)},
            {"ports": [{"port": "api"}], "from": _labelled_from("hub.jupyter.org/network-access-proxy-api", accept)},
            *(proxy.get("ingress") or []),
        ]
        egress = [
            {"to": [{"podSelector": {"matchLabels": _match_labels(release, "hub")}}], "ports": [{"port": 8081}]},
            {
                "to": [{"podSelector": {"matchLabels": _match_labels(release, "singleuser-server")}}],
                "ports": [{"port": 8888}],
            },
            *_egress_allow_rules(proxy, metadata_ip),
        ]
        policies.append(_policy("proxy", namespace, _match_labels(release, "proxy"), ingress, egress))
    user = values["singleuser"]["networkPolicy"]
    if user["enabled"]:
        from_ = [{"podSelector": {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}}]
        if user.get("interNamespaceLabeledIngress") == "allow":
            from_ = [
                {**from_[0], "namespaceSelector": {"matchLabels": {}}},
                {"namespaceSelector": {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}},
            ]
        ingress = [{"ports": [{"port": "notebook-port"}], "from": from_}, *(user.get("ingress") or [])]
        egress = [
            {"to": [{"podSelector": {"matchLabels": _match_labels(release, "hub")}}], "ports": [{"port": 8081}]},
            {"to": [{"podSelector": {"matchLabels": _match_labels(release, "proxy")}}], "ports": [{"port": 8000}]},
            {
                "to": [{"podSelector": {"matchLabels": _match_labels(release, "autohttps")}}],
                "ports": [{"port": 8080}, {"port": 8443}],
            },
            *_egress_allow_rules(user, metadata_ip),
        ]
        policies.append(_policy("singleuser", namespace, _match_labels(release, "singleuser-server"), ingress, egress))
    return policies
