"""`store.models.UTCDateTime`: the store keeps naive UTC instants and hands out aware UTC
datetimes, the same instant whatever zone it was given in."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from store.models import UTCDateTime

BERLIN_SUMMER = dt.timezone(dt.timedelta(hours=2))
DIALECTS = [postgresql.psycopg.dialect(), sqlite.pysqlite.dialect()]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_an_aware_time_is_kept_as_naive_utc_and_comes_back_aware_and_equal(dialect):
    kind = UTCDateTime()
    given = dt.datetime(2027, 7, 1, 9, 30, 15, 123456, tzinfo=BERLIN_SUMMER)

    kept = kind.process_bind_param(given, dialect)
    back = kind.process_result_value(kept, dialect)

    assert kept == dt.datetime(2027, 7, 1, 7, 30, 15, 123456)
    assert kept.tzinfo is None
    assert back == given
    assert back.tzinfo is dt.UTC
    assert (back.hour, back.microsecond) == (7, 123456)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_nothing_stays_nothing_and_a_naive_time_is_refused(dialect):
    kind = UTCDateTime()
    assert kind.process_bind_param(None, dialect) is None
    assert kind.process_result_value(None, dialect) is None
    with pytest.raises(ValueError, match="naive datetime"):
        kind.process_bind_param(dt.datetime(2027, 7, 1, 9, 30), dialect)
