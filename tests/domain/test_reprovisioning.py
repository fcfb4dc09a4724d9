"""Reprovisioning as a plan: substatus, twin and old hub for every case of the policy."""

from __future__ import annotations

from typing import Any

import pytest

from devprov.domain.models import DeviceRegistrationState, ReprovisionPolicy
from devprov.domain.reprovisioning import Place, Plan, current_place, plan, stays_put

TWIN = {"tags": {"t": 1}, "properties": {"desired": {"d": 2}}}


def assigned(hub: str = "old.example", device_id: str = "dev-1", **fields: Any) -> Any:
    return DeviceRegistrationState(
        registration_id="dev-1", assigned_hub=hub, device_id=device_id, status="assigned", **fields
    )


def policy(update: bool = True, migrate: bool = True) -> ReprovisionPolicy:
    return ReprovisionPolicy(update_hub_assignment=update, migrate_device_data=migrate)


def test_first_assignment_applies_the_initial_twin_or_an_empty_one() -> None:
    assert plan(None, policy(), "new.example", TWIN) == Plan("initialAssignment", TWIN)
    assert plan(None, policy(), "new.example", None) == Plan("initialAssignment", {})


def test_a_failed_first_attempt_is_still_a_first_assignment() -> None:
    failed = DeviceRegistrationState(registration_id="dev-1", status="failed", error_code=400208)
    assert current_place(failed) is None
    assert plan(failed, policy(), "new.example", TWIN).substatus == "initialAssignment"


def test_same_hub_again_leaves_the_twin_alone() -> None:
    result = plan(assigned("Hub.Example"), policy(), "hub.example", TWIN)
    assert result == Plan("reprovisionedToInitialAssignment", None)


def test_moving_with_migrate_carries_the_twin_and_leaves_the_old_hub() -> None:
    old = Place("old.example", "dev-1")
    result = plan(assigned(), policy(migrate=True), "new.example", TWIN)
    assert result == Plan("deviceDataMigrated", None, carry_twin_from=old, leave=old)


def test_moving_with_reset_applies_the_initial_twin_and_leaves_the_old_hub() -> None:
    result = plan(assigned(), policy(migrate=False), "new.example", TWIN)
    assert result == Plan("deviceDataReset", TWIN, leave=Place("old.example", "dev-1"))


@pytest.mark.parametrize("migrate", [True, False])
def test_never_reprovision_keeps_hub_and_twin(migrate: bool) -> None:
    never = policy(update=False, migrate=migrate)
    assert stays_put(assigned(), never)
    assert plan(assigned(), never, "old.example", TWIN) == Plan("initialAssignment", None)


def test_nothing_stays_put_that_was_never_placed() -> None:
    assert not stays_put(None, policy(update=False))
