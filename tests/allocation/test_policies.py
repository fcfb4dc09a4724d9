"""The built-in allocation policies: which hubs are candidates, hashed and static choices."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from devprov.allocation.policies import (
    AllocationError,
    candidate_hubs,
    geo_latency,
    hashed,
    static,
)
from devprov.domain.models import EnrollmentGroup, IndividualEnrollment, LinkedHub

IDS = [f"device-{number:05d}" for number in range(3000)]


def hub(name: str, weight: int = 1, apply: bool = True) -> LinkedHub:
    return LinkedHub(host_name=name, allocation_weight=weight, apply_allocation_policy=apply)


def enrollment(**fields: Any) -> IndividualEnrollment:
    return IndividualEnrollment.model_validate(
        {"registrationId": "dev-1", "attestation": {"type": "symmetricKey"}, **fields}
    )


def allocate(hubs: list[LinkedHub]) -> dict[str, str]:
    return {registration_id: hashed(registration_id, hubs).host_name for registration_id in IDS}


# hashed ----------------------------------------------------------------------------------


def test_hashed_is_deterministic_and_ignores_registration_id_case() -> None:
    hubs = [hub("a.example"), hub("b.example"), hub("c.example")]
    for registration_id in IDS[:200]:
        chosen = hashed(registration_id, hubs)
        assert hashed(registration_id, hubs) is chosen
        assert hashed(registration_id.upper(), hubs) is chosen
        assert hashed(registration_id, list(reversed(hubs))) is chosen


def test_hashed_does_not_depend_on_host_name_case() -> None:
    lower = allocate([hub("a.example"), hub("b.example")])
    mixed = allocate([hub("A.Example"), hub("b.EXAMPLE")])
    assert {k: v.lower() for k, v in mixed.items()} == lower


def test_hashed_spreads_evenly_over_equal_weights() -> None:
    counts = Counter(allocate([hub("a.example"), hub("b.example"), hub("c.example")]).values())
    assert set(counts) == {"a.example", "b.example", "c.example"}
    assert all(800 <= count <= 1200 for count in counts.values()), counts


def test_hashed_follows_allocation_weight() -> None:
    counts = Counter(allocate([hub("light.example", 1), hub("heavy.example", 3)]).values())
    assert counts["light.example"] + counts["heavy.example"] == len(IDS)
    ratio = counts["heavy.example"] / counts["light.example"]
    assert 2.4 <= ratio <= 3.7, counts


def test_adding_a_hub_only_moves_devices_to_the_new_hub() -> None:
    before = allocate([hub("a.example"), hub("b.example", 2)])
    after = allocate([hub("a.example"), hub("b.example", 2), hub("c.example")])
    moved = {
        registration_id
        for registration_id in IDS
        if before[registration_id] != after[registration_id]
    }
    assert moved, "the new hub should win some devices"
    assert {after[registration_id] for registration_id in moved} == {"c.example"}
    assert 500 <= len(moved) <= 1000  # about a quarter of 3000


def test_removing_a_hub_only_moves_that_hubs_devices() -> None:
    before = allocate([hub("a.example"), hub("b.example"), hub("c.example")])
    after = allocate([hub("a.example"), hub("c.example")])
    for registration_id in IDS:
        if before[registration_id] != "b.example":
            assert after[registration_id] == before[registration_id]


def test_hashed_without_hubs_is_400208() -> None:
    with pytest.raises(AllocationError) as caught:
        hashed("dev-1", [])
    assert (caught.value.status, caught.value.error_code) == (400, 400208)


def test_geo_latency_falls_back_to_hashed() -> None:
    hubs = [hub("a.example"), hub("b.example", 5)]
    for registration_id in IDS[:100]:
        assert geo_latency(registration_id, hubs) is hashed(registration_id, hubs)


# candidate_hubs ----------------------------------------------------------------------------


def test_without_a_list_every_hub_applying_the_policy_is_a_candidate() -> None:
    linked = [hub("a.example"), hub("quiet.example", apply=False), hub("b.example")]
    names = [candidate.host_name for candidate in candidate_hubs(enrollment(), linked)]
    assert names == ["a.example", "b.example"]
    assignments = {hashed(rid, candidate_hubs(enrollment(), linked)).host_name for rid in IDS}
    assert "quiet.example" not in assignments


def test_an_enrollment_may_name_a_hub_that_does_not_apply_the_policy() -> None:
    linked = [hub("a.example"), hub("Quiet.Example", apply=False)]
    named = candidate_hubs(enrollment(allocationPolicy="hashed", iotHubs=["quiet.example"]), linked)
    assert [candidate.host_name for candidate in named] == ["Quiet.Example"]
    legacy = candidate_hubs(enrollment(iotHubHostName="QUIET.example"), linked)
    assert [candidate.host_name for candidate in legacy] == ["Quiet.Example"]


def test_group_lists_are_honoured_in_order() -> None:
    group = EnrollmentGroup.model_validate(
        {
            "enrollmentGroupId": "g",
            "attestation": {"type": "symmetricKey"},
            "allocationPolicy": "hashed",
            "iotHubs": ["b.example", "a.example"],
        }
    )
    linked = [hub("a.example"), hub("b.example"), hub("c.example")]
    assert [h.host_name for h in candidate_hubs(group, linked)] == ["b.example", "a.example"]


def test_no_linked_hub_is_400208() -> None:
    for linked in ([], [hub("quiet.example", apply=False)]):
        with pytest.raises(AllocationError) as caught:
            candidate_hubs(enrollment(), linked)
        assert (caught.value.status, caught.value.error_code) == (400, 400208)


def test_named_hub_that_is_not_linked_is_400209() -> None:
    with pytest.raises(AllocationError) as caught:
        candidate_hubs(
            enrollment(allocationPolicy="hashed", iotHubs=["a.example", "gone.example"]),
            [hub("a.example")],
        )
    assert (caught.value.status, caught.value.error_code) == (400, 400209)
    assert "gone.example" in caught.value.message


# static ------------------------------------------------------------------------------------


def test_static_takes_the_only_hub() -> None:
    only = hub("a.example")
    assert static([only]) is only


@pytest.mark.parametrize("count", [0, 2])
def test_static_needs_exactly_one_hub(count: int) -> None:
    with pytest.raises(AllocationError) as caught:
        static([hub(f"h{number}.example") for number in range(count)])
    assert (caught.value.status, caught.value.error_code) == (400, 400208)
    assert f"{count} are possible" in caught.value.message
