"""The Kubernetes router through the real ``kubernetes`` client, against the recorded HTTPRoute object.

No cluster runs here: a loopback HTTP server answers the two calls the router makes (GET and PATCH of
the HTTPRoute) with the API object as the chart renders it and the API server returns it, and applies
the JSON merge patch as the API server does (lists replaced whole). What it checks is the client side:
the resource path, the merge-patch content type, the patch body and the weights that result.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.rollout.routing import KubernetesRouter, Routing, read_routing
from services.rollout.settings import KubernetesRoute
from shared.settings import KaizenSettings
from shared.state import RedisState

from .test_routing import chart_route

pytestmark = pytest.mark.integration
PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/kaizen/httproutes/kaizen-chat"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class RecordedApi:
    def __init__(self, route: dict[str, Any]) -> None:
        self.route = route
        self.patches: list[tuple[str, dict[str, Any]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != PATH:
                    self._send(404, {"kind": "Status", "code": 404, "message": f"{self.path} not found"})
                    return
                self._send(200, api.route)

            def do_PATCH(self) -> None:
                patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.patches.append((self.headers["Content-Type"], patch))
                if self.path != PATH:
                    self._send(404, {"kind": "Status", "code": 404, "message": f"{self.path} not found"})
                    return
                api.route = merge_patch(api.route, patch)
                api.route["metadata"]["resourceVersion"] = str(
                    int(api.route["metadata"]["resourceVersion"]) + 1
                )
                self._send(200, api.route)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def weights(self) -> list[int]:
        return [ref["weight"] for ref in self.route["spec"]["rules"][0]["backendRefs"]]


@pytest.fixture
def recorded() -> Iterator[RecordedApi]:
    route = chart_route()
    route["metadata"]["name"] = "kaizen-chat"
    api = RecordedApi(route)
    thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    thread.start()
    yield api
    api.server.shutdown()


async def test_the_router_patches_the_route_weights_through_the_kubernetes_api(
    settings: KaizenSettings, recorded: RecordedApi
) -> None:
    from kubernetes import client

    refs = recorded.route["spec"]["rules"][0]["backendRefs"]
    options = KubernetesRoute(
        namespace="kaizen",
        name="kaizen-chat",
        champion_service=refs[0]["name"],
        canary_service=refs[1]["name"],
        in_cluster=False,
    )
    api = client.CustomObjectsApi(client.ApiClient(client.Configuration(host=recorded.url)))
    state = RedisState(settings)
    router = KubernetesRouter(state, options, api=api)
    try:
        await router.apply(
            Routing(champion_version="3", canary_version="4", canary_weight=0.25, rollout_id="r")
        )
        assert recorded.weights() == [75, 25]
        routing = await read_routing(state)
        assert (routing.canary_version, routing.canary_weight) == ("4", 0.25)

        # Shadow mode and rollback both send users nothing from the canary.
        await router.apply(Routing(champion_version="3", canary_version="4", canary_weight=1.0, shadow=True))
        assert recorded.weights() == [100, 0]
        await router.apply(Routing(champion_version="4"))
        assert recorded.weights() == [100, 0]
    finally:
        await state.close()

    assert [content_type for content_type, _ in recorded.patches] == ["application/merge-patch+json"] * 3
    assert set(recorded.patches[0][1]) == {"spec"}
    assert recorded.route["spec"]["parentRefs"] == chart_route()["spec"]["parentRefs"]  # untouched
    assert recorded.route["metadata"]["resourceVersion"] == "4714"


async def test_a_missing_route_is_an_error_naming_it(settings: KaizenSettings, recorded: RecordedApi) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    options = KubernetesRoute(namespace="kaizen", name="no-such-route", in_cluster=False)
    api = client.CustomObjectsApi(client.ApiClient(client.Configuration(host=recorded.url)))
    state = RedisState(settings)
    try:
        with pytest.raises(ApiException, match="no-such-route not found"):
            await KubernetesRouter(state, options, api=api).apply(
                Routing(canary_version="4", canary_weight=0.05)
            )
    finally:
        await state.close()
    assert recorded.patches == []
