"""Bounded logging: a request's path or data never reaches a log line whole."""

import io
import logging

from traitlets.config import Config

from mlopshub import logs


def test_a_long_run_of_text_is_cut_and_says_how_much_was_left_out():
    line = "404 GET /hub/" + "x" * 30_000 + " (alice@127.0.0.1) 1.2ms"
    cut = logs.bounded(line)
    assert len(cut) < 700
    assert cut.startswith("404 GET /hub/xxx") and cut.endswith("(alice@127.0.0.1) 1.2ms")
    assert f"[{len('/hub/') + 30_000 - logs.LIMIT} more characters]" in cut


def test_short_lines_are_left_alone():
    assert logs.bounded("200 GET /hub/api (admin@127.0.0.1) 3.1ms") == "200 GET /hub/api (admin@127.0.0.1) 3.1ms"


def test_the_filter_bounds_a_record_formatted_with_its_arguments():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.BoundedRecords())
    logger = logging.getLogger("test-logs-bounded")
    logger.addHandler(handler)
    try:
        logger.warning("404 GET %s (%s@%s)", "/services/pipeline/" + "%2e" * 100_000, "bob", "127.0.0.1")
    finally:
        logger.removeHandler(handler)
    assert 500 < len(stream.getvalue()) < 700
    assert "(bob@127.0.0.1)" in stream.getvalue()


def test_the_hub_console_handler_gets_the_filter_and_an_admins_logging_config_stays():
    c = Config()
    c.JupyterHub.logging_config = {"handlers": {"file": {"class": "logging.FileHandler", "filename": "hub.log"}}}
    logs.apply_bounded_logging(c)
    config = c.JupyterHub.logging_config
    assert config["handlers"]["console"]["filters"] == [logs.FILTER_NAME]
    assert config["handlers"]["file"]["filename"] == "hub.log"
    assert config["filters"][logs.FILTER_NAME] == {"()": "mlopshub.logs.BoundedRecords"}
