"""The models service's capture and the team's monitoring store: what is written, dropped, kept out and swept."""

import json
import random
import sqlite3
import time

import pytest

from mlopshub.monitoring.capture import Capture, Record, predictions_of, scoring_rows
from mlopshub.monitoring.store import MonitoringStore, OutcomeError, Settings, SettingsError, store_path

SPLIT = b'{"dataframe_split": {"columns": ["amount", "income"], "data": [[1.5, 20], [3, 40]]}}'


def record(request_id: str, body: bytes = SPLIT, answer: bytes = b'{"predictions": [0, 1]}', **fields) -> Record:
    values = dict(team="credit", model="m", version="1", stage="production", at=time.time(), latency_ms=2.0,
                  status=200, content_type="application/json", body=body, answer=answer)  # fmt: skip
    values.update(fields)
    return Record(request_id=request_id, **values)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (SPLIT, "application/json", (["amount", "income"], [[1.5, 20], [3, 40]])),
        (b'{"dataframe_records": [{"a": 1, "b": 2}, {"b": 3, "c": 4}]}', "application/json",
         (["a", "b", "c"], [[1, 2, None], [None, 3, 4]])),
        (b'{"instances": [{"a": 1}, {"a": 2}]}', "application/json", (["a"], [[1], [2]])),
        (b'{"inputs": {"a": [1, 2], "b": [3]}}', "application/json", (["a", "b"], [[1, 3], [2, None]])),
        (b'{"inputs": [[1, 2], [3, 4]]}', "application/json", (["0", "1"], [[1, 2], [3, 4]])),
        (b"a,b\n1,2\n3,4\n", "text/csv; charset=utf-8", (["a", "b"], [["1", "2"], ["3", "4"]])),
    ],
)  # fmt: skip
def test_every_scoring_format_is_read_as_rows(body, content_type, expected):
    assert scoring_rows(body, content_type) == expected


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"other": 1}', b"[" * 100_000 + b"]" * 100_000, b'{"dataframe_split": {"data": 3}}',
     b'{"inputs": "text"}', b"\xff\xfe"],
)  # fmt: skip
def test_a_body_that_is_no_table_is_captured_without_rows_and_never_raises(body):
    assert scoring_rows(body, "application/json") is None


def test_predictions_are_read_from_either_answer_shape():
    assert predictions_of(b'{"predictions": [0, 1]}') == [0, 1]
    assert predictions_of(b"[0.2, 0.7]") == [0.2, 0.7]
    assert predictions_of(b'{"error_code": "BAD_REQUEST"}') is None
    assert predictions_of(b"[" * 100_000) is None


def test_captures_are_written_with_their_rows_and_answers(tmp_path):
    capture = Capture(tmp_path)
    for number in range(5):
        assert capture.record(record(f"r{number}"))
    assert capture.flush()
    store = capture.store("credit")
    assert store.counts("m", "production") == {"captured": 5, "dropped": 0, "outcomes": 0}
    rows = list(store.records("m", "production", 0, time.time() + 1))
    assert json.loads(rows[0][1]) == {"columns": ["amount", "income"], "data": [[1.5, 20], [3, 40]]}
    assert json.loads(rows[0][2]) == [0, 1]
    capture.close()
    assert oct(tmp_path.stat().st_mode & 0o777) == oct(0o700)


def test_numbers_json_cannot_hold_are_captured_as_strict_json(tmp_path):
    # MLflow's scoring server reads NaN and Infinity (Python's json does, and Python clients send them), and
    # integers of any size; the store holds strict JSON that any reader, and the drift check's orjson, reads.
    capture = Capture(tmp_path)
    big = 123456789012345678901234567890
    body = b'{"dataframe_split": {"columns": ["amount", "id"], "data": [[NaN, %d], [Infinity, 1]]}}' % big
    capture.record(record("odd", body=body, answer=b'{"predictions": [NaN, 0.5]}'))
    capture.close()
    _, inputs, outputs = next(capture.store("credit").records("m", "production", 0, time.time() + 1))
    assert strict_json(inputs) == {
        "columns": ["amount", "id"],
        "data": [[None, big], [None, 1]],
    }
    assert strict_json(outputs) == [None, 0.5]
    assert "NaN" not in inputs and "Infinity" not in inputs


def strict_json(text):
    """Strict JSON only: Python's parser with the non-standard constants refused."""
    return json.loads(text, parse_constant=pytest.fail)


def test_excluded_columns_are_never_written(tmp_path):
    MonitoringStore(store_path(tmp_path, "credit")).set_settings("m", Settings(exclude_columns=("income",)), "carol")
    capture = Capture(tmp_path)
    capture._read_settings()  # as the writer does every few seconds
    body = b'{"dataframe_split": {"columns": ["amount", "income"], "data": [[1.5, 271828182]]}}'
    capture.record(record("secret", body=body))
    capture.close()
    inputs = next(capture.store("credit").records("m", "production", 0, time.time() + 1))[1]
    assert json.loads(inputs) == {"columns": ["amount"], "data": [[1.5]]}
    for file in tmp_path.glob("credit.sqlite*"):
        assert b"271828182" not in file.read_bytes()


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    capture = Capture(tmp_path, queue_size=3)
    started = time.monotonic()
    queued = sum(capture.record(record(f"r{number}")) for number in range(2000))
    assert time.monotonic() - started < 2.0  # never waits for the disk
    capture.close()
    counts = capture.store("credit").counts("m", "production")
    assert counts["captured"] == queued
    assert counts["dropped"] == 2000 - queued > 0


def test_sampling_captures_the_share_set_for_the_model(tmp_path):
    MonitoringStore(store_path(tmp_path, "credit")).set_settings("m", Settings(sample_rate=0.25), "carol")
    capture = Capture(tmp_path, rng=random.Random(1))
    capture._read_settings()
    kept = sum(capture.record(record(f"r{number}")) for number in range(2000))
    capture.close()
    assert 400 < kept < 600
    assert capture.store("credit").counts("m", "production")["dropped"] == 0  # not sampled is not dropped


def test_a_model_without_a_team_is_not_captured(tmp_path):
    capture = Capture(tmp_path)
    assert not capture.record(record("r", team=""))
    capture.close()
    assert list(tmp_path.glob("*.sqlite")) == []


def test_outcomes_are_stored_all_or_none_and_each_refusal_names_its_field(tmp_path):
    store = MonitoringStore(tmp_path / "credit.sqlite")
    now = time.time()
    row = ("a", "m", "1", "production", now, 1.0, 200, 2, None, "[0, 1]", "online")
    store.add_captures([row, ("b", "m", "1", "production", now, 1.0, 200, 1, None, "[1]", "online"),
                        ("c", "other", "1", "production", now, 1.0, 200, 1, None, "[1]", "online")])  # fmt: skip
    cases = [
        ([{"request_id": "a", "value": [1, 0]}, {"request_id": "zzz", "value": 1}], "outcomes[1].request_id", 404),
        ([{"request_id": "c", "value": 1}], "outcomes[0].request_id", 404),  # another model's request
        ([{"request_id": "a", "value": [1]}], "outcomes[0].value", 422),  # one outcome for two rows
        ([{"request_id": "b", "value": {"x": 1}}], "outcomes[0].value", 422),
        ([{"request_id": "b", "value": float("nan")}], "outcomes[0].value", 422),
        ([{"request_id": "b"}], "outcomes[0].value", 422),
        ([{"request_id": "b", "value": 1}, {"request_id": "b", "value": 1}], "outcomes[1].request_id", 409),
        ([{"request_id": 7, "value": 1}], "outcomes[0].request_id", 422),
    ]
    for items, field, status in cases:
        with pytest.raises(OutcomeError) as refused:
            store.add_outcomes("m", items)
        assert (refused.value.field, refused.value.status) == (field, status), items
    assert store.counts("m", "production")["outcomes"] == 0  # nothing of a refused request was kept
    assert store.add_outcomes("m", [{"request_id": "a", "value": [1, 0]}, {"request_id": "b", "value": "yes"}]) == 2
    with pytest.raises(OutcomeError) as again:
        store.add_outcomes("m", [{"request_id": "a", "value": [1, 0]}])
    assert again.value.status == 409
    assert [json.loads(value) for _, _, value in store.outcomes("m", "production", 0, now + 1)] == [[1, 0], ["yes"]]


def test_captures_past_their_retention_go_with_their_outcomes(tmp_path):
    store = MonitoringStore(tmp_path / "credit.sqlite")
    now = time.time()
    store.set_settings("m", Settings(retention_days=1), "carol")
    old = ("old", "m", "1", "production", now - 2 * 86400, 1.0, 200, 1, None, "[1]", "online")
    kept = ("new", "m", "1", "production", now, 1.0, 200, 1, None, "[1]", "online")
    keeps_90 = ("n90", "n", "1", "production", now - 30 * 86400, 1.0, 200, 1, None, "[1]", "online")
    store.add_captures([old, kept, keeps_90])
    store.add_outcomes("m", [{"request_id": "old", "value": 1}])
    assert store.sweep(now) == 1
    assert store.counts("m", "production") == {"captured": 1, "dropped": 0, "outcomes": 0}
    assert store.counts("n", "production")["captured"] == 1  # the default keeps 90 days
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("SELECT count(*) FROM outcomes").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [({"sample_rate": 1.5}, "sample_rate"), ({"sample_rate": True}, "sample_rate"),
     ({"sample_rate": "1"}, "sample_rate"),
     ({"retention_days": 0}, "retention_days"), ({"retention_days": 2.5}, "retention_days"),
     ({"exclude_columns": "income"}, "exclude_columns"), ({"exclude_columns": [""]}, "exclude_columns"),
     ({"keep": 1}, "keep")],
)  # fmt: skip
def test_bad_settings_name_the_field(body, field):
    with pytest.raises(SettingsError) as refused:
        Settings.parse(body)
    assert refused.value.field == field


def test_settings_left_out_keep_their_value():
    current = Settings(sample_rate=0.5, retention_days=30, exclude_columns=("ssn",))
    assert Settings.parse({"retention_days": 7}, current) == Settings(0.5, 7, ("ssn",))
