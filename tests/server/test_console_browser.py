"""The console in a real headless Chromium: sign in, watch a registration arrive in the live
feed, open it, disable its group, and see the next device refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devprov.client.device import DeviceClient, RegistrationFailed
from tests.conftest import Running, start_devprov
from tests.console_browser import chromium, chromium_available, new_page, sign_in

pytestmark = pytest.mark.skipif(
    not chromium_available(), reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    started = await start_devprov(tmp_path / "data", f"sqlite:///{tmp_path / 'devprov.db'}")
    yield started
    await started.devprov.close()


async def test_sign_in_watch_open_disable_refuse(running: Running) -> None:
    service = running.service()
    await service.link_hub("hub-1.example")
    group = await service.put_group(
        {"enrollmentGroupId": "fleet", "attestation": {"type": "symmetricKey"}}
    )
    group_key = group["attestation"]["symmetricKey"]["primaryKey"]
    devices = DeviceClient("localhost", running.id_scope, running.port, running.ca)
    base = f"https://localhost:{running.port}"

    async with chromium() as browser:
        page = await new_page(browser)
        await page.goto(base + "/console/feed")
        assert "/console/login" in page.url  # no session: the sign-in page first
        await page.fill("#credential", "not-a-key")
        await page.click("#sign-in")
        assert await page.is_visible("text=That is not a key of this devprov.")
        await sign_in(page, base, running.connection_string)

        await page.goto(base + "/console/feed")
        await page.wait_for_selector("#feed-state:has-text('live')")
        await devices.register("sensor-1", group_key=group_key, payload={"model": "s1"})
        row = page.locator("#feed tr[data-registration-id='sensor-1']")
        await row.wait_for()
        assert "assigned" in await row.inner_text()

        await row.locator("a").click()
        await page.wait_for_url("**/console/registrations/sensor-1")
        assert (await page.inner_text("#assigned-hub")).strip() == "hub-1.example"
        assert "s1" in await page.inner_text("main")  # the payload the device sent

        await page.goto(base + "/console/groups/fleet")
        await page.click("#toggle-status")
        await page.wait_for_selector("#provisioning-status:has-text('disabled')")

        with pytest.raises(RegistrationFailed) as refused:
            await devices.register("sensor-2", group_key=group_key)
        assert refused.value.status == 403 and refused.value.body["errorCode"] == 403001
        await page.goto(base + "/console/feed?outcome=refused")
        refusal = page.locator("#feed tr[data-registration-id='sensor-2']")
        await refusal.wait_for()
        assert "403001" in await refusal.inner_text()

        await page.click("#logout")
        await page.wait_for_url("**/console/login")
        await page.goto(base + "/console/overview")
        assert "/console/login" in page.url  # signed out for good
