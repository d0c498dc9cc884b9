"""Bounded logging: a request's path or data never reaches a log line whole."""

import io
import json
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


def test_uvicorns_access_log_keeps_its_arguments_and_is_bounded():
    # uvicorn's AccessFormatter reads the request line from the record's arguments: they are cut, not dropped.
    from uvicorn.logging import AccessFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    handler.addFilter(logs.BoundedRecords())
    logger = logging.getLogger("test-logs-uvicorn-access")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/services/mlflow/" + "x" * 100_000, "1.1", 404)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert len(line) < 700 and line.startswith('127.0.0.1:5000 - "GET /services/mlflow/xxx')
    assert line.endswith(' more characters] HTTP/1.1" 404 Not Found\n')


def test_mlflows_log_configuration_ships_with_the_package_and_bounds_both_handlers():
    from mlopshub.services.mlflow_server import LOG_CONFIG

    config = json.loads(LOG_CONFIG.read_text())
    assert all(logs.FILTER_NAME in handler["filters"] for handler in config["handlers"].values())
