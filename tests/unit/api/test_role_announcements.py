"""Grant changes made from synchronous code (the admin, the ``roles`` command) are announced
to the rooms they cover once they are committed
(:func:`jupyter_ydjango.api.roles.announce_grant_change`).

The Django admin saves and deletes inside a transaction. A connection told of a change before
its commit looks its role up, reads the role it is leaving, and hears of nothing: the guest
kept editing after the admin made them viewer whenever its look-up won that race.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import transaction

from jupyter_ydjango.api.roles import ROLES_CHANGED, announce_grant_change
from jupyter_ydjango.models import Document
from jupyter_ydjango.rooms.relay import room_group_name


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", interactive=False, verbosity=0)


async def test_a_change_in_a_transaction_is_announced_once_committed() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()

    async def heard(timeout: float) -> list[dict]:
        try:
            return [await asyncio.wait_for(layer.receive(channel), timeout)]
        except asyncio.TimeoutError:
            return []

    def change_in_a_transaction() -> list[dict]:
        """Like the admin's save: the change and its announcement inside one transaction;
        what the room's group heard before the commit."""
        with transaction.atomic():
            document = Document.objects.create(path=f"/srv/{uuid.uuid4().hex}/a.ipynb")
            async_to_sync(layer.group_add)(room_group_name(document.room_name), channel)
            announce_grant_change(str(document.id), None)
            return async_to_sync(heard)(0.3)

    before_commit = await sync_to_async(change_in_a_transaction)()
    assert before_commit == []
    assert await heard(5) == [{"type": ROLES_CHANGED}]


async def test_a_change_outside_a_transaction_is_announced_at_once() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()

    def change() -> None:
        document = Document.objects.create(path=f"/srv/{uuid.uuid4().hex}/b.ipynb")
        async_to_sync(layer.group_add)(room_group_name(document.room_name), channel)
        announce_grant_change(str(document.id), None)

    await sync_to_async(change)()
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": ROLES_CHANGED}
