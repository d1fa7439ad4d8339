"""Traffic routing: who gets the canary, and the routers that carry the weight to the serving layer.

The routing table (``Routing``) lives in Redis under ``state:rollout:routing``: the controller writes it,
the local gateway re-reads it every ``gateway.routing_refresh_s`` and splits requests itself. On
Kubernetes the controller also patches the Gateway API HTTPRoute of the Helm chart
(``deploy/helm/kaizen/templates/route.yaml``): its two backendRefs, the champion and the canary gateway
Services, get weights ``100 - w`` and ``w`` (the canary's weight in percent).

A user (or session) is assigned by hashing its key with the rollout id: the same key lands on the same
arm for the whole stage, and since the threshold only grows from stage to stage, a user on the canary
stays there when the weight grows.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from services.rollout.errors import RolloutError
from services.rollout.settings import KubernetesRoute
from shared.state import RedisState

ROUTING_KEY = "rollout:routing"
BASE_VERSION = "base"
"""Version label of the configured base model, which serves as champion while no version holds the alias."""

Arm = Literal["champion", "canary"]
HTTPROUTE_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"

log = logging.getLogger("kaizen.rollout.routing")


class Routing(BaseModel):
    """What serves now: the champion, the canary (if any) and its share of traffic."""

    champion_version: str = Field(
        BASE_VERSION, description="Version the champion arm serves ('base': the base model)."
    )
    canary_version: str | None = Field(None, description="Version the canary arm serves, if a rollout runs.")
    canary_weight: float = Field(0.0, ge=0.0, le=1.0, description="Share of users sent to the canary.")
    shadow: bool = Field(False, description="Users see the champion; the canary answers mirrored copies.")
    registered_model: str | None = Field(None, description="Registered model the versions belong to.")
    rollout_id: str | None = Field(None, description="The running rollout (the salt of the user hash).")
    stage: int | None = Field(None, description="Stage index of the running rollout.")
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def bucket(key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, key)."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_arm(routing: Routing, key: str) -> Arm:
    """The arm a user or session key is served by (users never see the canary in shadow mode)."""
    if routing.canary_version is None or routing.canary_weight <= 0.0 or routing.shadow:
        return "champion"
    return "canary" if bucket(key, routing.rollout_id or "") < routing.canary_weight else "champion"


def mirrored(routing: Routing, key: str) -> bool:
    """In shadow mode: whether this request is also copied to the canary (the weight is the mirror share)."""
    if not routing.shadow or routing.canary_version is None:
        return False
    return bucket(key, routing.rollout_id or "") < routing.canary_weight


async def read_routing(state: RedisState) -> Routing:
    document = await state.get_json(ROUTING_KEY)
    return Routing() if document is None else Routing.model_validate(document)


class TrafficRouter(Protocol):
    """Carries the routing table to whatever splits traffic."""

    async def apply(self, routing: Routing) -> None: ...


class RedisRouter:
    """Local serving: the Ray Serve gateway reads the table from Redis."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    async def apply(self, routing: Routing) -> None:
        await self.state.put_json(ROUTING_KEY, routing.model_dump(mode="json"))


def httproute_weights_patch(
    route: dict[str, Any], champion_service: str, canary_service: str, canary_weight: float
) -> dict[str, Any]:
    """The JSON merge patch that gives the route's champion and canary backendRefs their weights.

    Merge patches replace lists whole, so the patch carries every rule of ``route`` as it is, with only
    the two weights changed (in percent, summing to 100). A route without both backends is an error.
    """
    if not 0.0 <= canary_weight <= 1.0:
        raise RolloutError(f"canary weight must be in [0, 1]; got {canary_weight}")
    name = route.get("metadata", {}).get("name", "<unnamed>")
    rules = copy.deepcopy(route.get("spec", {}).get("rules") or [])
    canary_percent = round(canary_weight * 100)
    found = {champion_service: False, canary_service: False}
    for rule in rules:
        for ref in rule.get("backendRefs") or []:
            if ref.get("name") == champion_service:
                ref["weight"] = 100 - canary_percent
                found[champion_service] = True
            elif ref.get("name") == canary_service:
                ref["weight"] = canary_percent
                found[canary_service] = True
    missing = [service for service, seen in found.items() if not seen]
    if missing:
        raise RolloutError(f"HTTPRoute {name!r} has no backendRef named {', '.join(map(repr, missing))}")
    return {"spec": {"rules": rules}}


class KubernetesRouter:
    """Kubernetes serving: patch the HTTPRoute's backend weights through the Kubernetes API.

    The Redis table is written too, so ``kaizen rollout status`` and the gateways see the same state.
    """

    def __init__(self, state: RedisState, route: KubernetesRoute, api: Any | None = None) -> None:
        self.redis = RedisRouter(state)
        self.route = route
        self._api = api
        self.namespace = route.namespace

    def _custom_objects(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            if self.route.in_cluster:
                config.load_incluster_config()
            else:
                config.load_kube_config()
            self._api = client.CustomObjectsApi()
        if self.namespace is None:
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
                    self.namespace = handle.read().strip()
            except OSError as exc:
                raise RolloutError(
                    "KAIZEN_ROLLOUT__KUBERNETES__NAMESPACE is unset and the pod's namespace is unknown"
                ) from exc
        return self._api

    def _patch(self, canary_weight: float) -> dict[str, Any]:
        api = self._custom_objects()
        current = api.get_namespaced_custom_object(
            HTTPROUTE_GROUP, HTTPROUTE_VERSION, self.namespace, HTTPROUTE_PLURAL, self.route.name
        )
        body = httproute_weights_patch(
            current, self.route.champion_service, self.route.canary_service, canary_weight
        )
        patched: dict[str, Any] = api.patch_namespaced_custom_object(
            HTTPROUTE_GROUP, HTTPROUTE_VERSION, self.namespace, HTTPROUTE_PLURAL, self.route.name, body
        )
        return patched

    async def apply(self, routing: Routing) -> None:
        weight = 0.0 if routing.shadow or routing.canary_version is None else routing.canary_weight
        await asyncio.to_thread(self._patch, weight)
        await self.redis.apply(routing)
        log.info("HTTPRoute weights patched", extra={"route": self.route.name, "canary_weight": weight})
