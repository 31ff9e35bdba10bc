"""Identifiers: derived ids are stable across versions, new ids are ordered."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from procession.ids import NAMESPACE, derived_id, new_ids

parts = st.lists(st.one_of(st.text(), st.integers(), st.uuids()), max_size=6)


@given(parts)
def test_a_derived_id_is_the_uuid5_of_its_parts_as_every_earlier_version_derived_it(
    values: list[object],
) -> None:
    # stored command and timer ids were derived with uuid.uuid5: a redelivered step after
    # an upgrade must derive the same ids, or idempotency would not catch the duplicate
    expected = str(uuid.uuid5(NAMESPACE, "/".join(str(v) for v in values)))
    assert derived_id(*values) == expected


@given(st.integers(min_value=1, max_value=5000))
def test_new_ids_are_valid_version_7_uuids_in_strictly_increasing_order(n: int) -> None:
    ids = new_ids(n) + new_ids(3)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
