"""Traffic assignment and the Kubernetes route patch, as pure functions."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import pytest

from services.rollout.errors import RolloutError
from services.rollout.routing import Routing, assign_arm, httproute_weights_patch, mirrored


def routing(weight: float, **fields: Any) -> Routing:
    return Routing(champion_version="3", canary_version="4", canary_weight=weight, rollout_id="r1", **fields)


@pytest.mark.parametrize("weight", [0.05, 0.25, 0.5, 1.0])
def test_over_2000_requests_the_canary_share_is_within_3_points_of_the_weight(weight: float) -> None:
    table = routing(weight)
    arms = [assign_arm(table, f"user:{i}") for i in range(2000)]
    share = arms.count("canary") / len(arms)
    assert abs(share - weight) <= 0.03


def test_a_user_stays_on_one_version_within_a_stage_and_canary_users_stay_as_it_grows() -> None:
    users = [f"session:{i}" for i in range(500)]
    first = {user: assign_arm(routing(0.05), user) for user in users}
    assert all(assign_arm(routing(0.05), user) == arm for user, arm in first.items())
    grown = {user: assign_arm(routing(0.25), user) for user in users}
    assert all(grown[user] == "canary" for user, arm in first.items() if arm == "canary")
    # A new rollout reshuffles who goes first.
    other = {user: assign_arm(routing(0.05).model_copy(update={"rollout_id": "r2"}), user) for user in users}
    assert other != first


def test_shadow_mode_shows_users_only_the_champion_and_mirrors_by_weight() -> None:
    table = routing(0.25, shadow=True)
    keys = [f"user:{i}" for i in range(2000)]
    assert {assign_arm(table, key) for key in keys} == {"champion"}
    assert abs(sum(mirrored(table, key) for key in keys) / 2000 - 0.25) <= 0.03
    assert not any(mirrored(routing(0.25), key) for key in keys)


def test_without_a_canary_everyone_gets_the_champion() -> None:
    assert assign_arm(Routing(champion_version="base"), "user:1") == "champion"


def chart_route() -> dict[str, Any]:
    """The HTTPRoute as the chart renders it, with what the API server adds when it returns it."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("the chart tests' dependencies are not installed")
    from tests.deploy.test_chart import render

    route = next(doc for doc in render("values-eks.yaml") if doc and doc.get("kind") == "HTTPRoute")
    served = copy.deepcopy(route)
    served["metadata"] |= {"namespace": "kaizen", "resourceVersion": "4711", "uid": "0b4f", "generation": 3}
    served["status"] = {"parents": [{"parentRef": route["spec"]["parentRefs"][0], "conditions": []}]}
    return served


def test_the_route_patch_sets_the_two_backend_weights_and_keeps_the_rest() -> None:
    route = chart_route()
    refs = route["spec"]["rules"][0]["backendRefs"]
    champion, canary = refs[0]["name"], refs[1]["name"]
    assert champion.endswith("gateway-champion") and canary.endswith("gateway-canary")

    patch = httproute_weights_patch(route, champion, canary, 0.25)

    assert set(patch) == {"spec"} and set(patch["spec"]) == {"rules"}
    rules = patch["spec"]["rules"]
    assert [ref["weight"] for ref in rules[0]["backendRefs"]] == [75, 25]
    assert rules[0]["matches"] == route["spec"]["rules"][0]["matches"]
    assert [ref["port"] for ref in rules[0]["backendRefs"]] == [ref["port"] for ref in refs]
    assert route["spec"]["rules"][0]["backendRefs"][1]["weight"] == 0  # the input is left as it was
    assert [
        r["weight"]
        for r in httproute_weights_patch(route, champion, canary, 0.0)["spec"]["rules"][0]["backendRefs"]
    ] == [100, 0]
    assert [
        r["weight"]
        for r in httproute_weights_patch(route, champion, canary, 1.0)["spec"]["rules"][0]["backendRefs"]
    ] == [0, 100]


def test_a_route_without_the_canary_backend_is_an_error_naming_it() -> None:
    route = chart_route()
    with pytest.raises(RolloutError, match="no backendRef named 'kaizen-gateway-blue'"):
        httproute_weights_patch(
            route, route["spec"]["rules"][0]["backendRefs"][0]["name"], "kaizen-gateway-blue", 0.05
        )
    with pytest.raises(RolloutError, match=r"canary weight must be in \[0, 1\]"):
        httproute_weights_patch(route, "a", "b", 1.5)
